"""The nightly pipeline at several sizes: wall time per step, throughput, peak memory.

    .venv/bin/python bench/nightly_at_scale.py                    # sizes from conf: bench.event_sizes
    .venv/bin/python bench/nightly_at_scale.py --events 100000 1000000

For each size (a number of events; people in proportion, over `bench.days` days):
generate the landing files (timed apart), then run four nights, each as its own
`enrich nightly` process so that its memory is its own:

- night 1 on an empty lakehouse: every landing file ingested, every model trained, every
  person scored and published (the worst case, a first load);
- night 2, the next day: no new files, models reused (retraining is weekly), every person's
  features, scores and profile rows rebuilt (a night without training);
- night 3, the day after: 1% new events (every hundredth landing event again, with a new
  id, on the day before: known people's next day), models reused;
- the first load again, into an empty lakehouse sharing night 1's model registry, so that
  no model is trained: the first night without training, measured as a night of its own.

Step times come from the run ledger (`ops/runs`); peak memory is the highest resident set
(VmHWM) of the driver's Python process, the JVM (in local mode the Spark driver and its
executors) and any Python worker. Writes bench/results.{json,md} (with bench/findings.md,
the profiles' notes, at the end) and bench/results/nightly_scaling.png after every size, so
a long large size never costs the smaller ones' figures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from itertools import pairwise
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import features_vs_duckdb  # noqa: E402  (bench/, beside this file)
import ltv_vs_lifetimes  # noqa: E402
import propensity_vs_sklearn  # noqa: E402
from provenance import machine, measured_stamp, measured_when  # noqa: E402
from pipelines.core import lakehouse  # noqa: E402
from pipelines.cli import STEP_ORDER  # noqa: E402
from pipelines.core.config import load_config  # noqa: E402
from pipelines.core.session import build_session  # noqa: E402

HERE = Path(__file__).resolve().parent
ENRICH = str(Path(sys.executable).with_name("enrich"))
RUN_DATE = date(2026, 6, 1)
# Events per person per year in the generator's default population; refined after the first size.
EVENTS_PER_PERSON_YEAR = 27.0
# Nights are judged by these targets (issue: benchmarks), on the size nearest 1M events.
TARGET_EVENTS = 1_000_000
TARGET_WITHOUT_TRAINING_S = 180
TARGET_WITH_TRAINING_S = 600
MAX_GROWTH_PER_10X = 12.0
# The usual night and one with new events, judged on the largest size (issue: performance, round two).
TARGET_USUAL_NIGHT_S = 90
TARGET_NEW_EVENTS_RATIO = 1.5
# Feature building against DuckDB, judged on the largest size if it is near 10M events.
TARGET_DUCKDB_EVENTS = 10_000_000
TARGET_DUCKDB_RATIO = 4.0


class PeakMemory:
    """Samples /proc once a second for the process tree under `pid`; VmHWM is the kernel's
    own high-water mark, so a peak between samples is not missed, only a process that both
    starts and ends between two samples."""

    def __init__(self, pid: int):
        self.pid, self.peaks_kib = pid, {"driver_python": 0, "jvm": 0, "python_workers": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in self._tree():
                status = _proc_status(pid)
                if "VmHWM" not in status:
                    continue
                kind = ("driver_python" if pid == self.pid else
                        "jvm" if status.get("Name") == "java" else
                        "python_workers" if _is_pyspark_worker(pid) else None)
                if kind:
                    self.peaks_kib[kind] = max(self.peaks_kib[kind], int(status["VmHWM"].split()[0]))
            self._stop.wait(1.0)

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _read(f"/proc/{entry}/stat")
                if stat:
                    # The command name is in parentheses and may hold spaces: ppid follows it.
                    children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def mib(self) -> dict[str, int]:
        return {kind: round(kib / 1024) for kind, kib in self.peaks_kib.items()}


def _read(path: str) -> str:
    """A /proc file, or "" when its process ended since it was listed."""
    try:
        with open(path) as handle:
            return handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _is_pyspark_worker(pid: int) -> bool:
    """pyspark's daemon or one of the workers it forks. Not any other child: a process the JVM
    is starting likely shares the JVM's memory until it execs, under the name of the JVM thread
    that started it; grouped by name, a "worker" once peaked at the JVM's 8,824 MiB."""
    command = _read(f"/proc/{pid}/cmdline").split("\0")
    return any(part in ("pyspark.daemon", "pyspark.worker") for part in command)


def _proc_status(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in _read(f"/proc/{pid}/status").splitlines() if ":\t" in line)


def _enrich(argv: list[str], log: Path) -> dict[str, int]:
    """One `enrich` command in its own process, its output to `log`; its peak memory."""
    with open(log, "a") as out:
        process = subprocess.Popen([ENRICH, *argv], stdout=out, stderr=subprocess.STDOUT)
        with PeakMemory(process.pid) as memory:
            code = process.wait()
    if code != 0:
        raise SystemExit(f"`enrich {' '.join(argv)}` exited with {code}; see {log}")
    return memory.mib()


# A night with new events: this share of the landing events again, as the day before its run date.
NEW_EVENTS_SHARE = 0.01


def new_events_file(landing: Path, day: date, share: float = NEW_EVENTS_SHARE) -> int:
    """Every (1/share)-th event of the landing files again, with a new id and its time of day
    on `day`, into one new landing file: the day's events of people already known (as most
    of a real night's are). Returns how many."""
    every = round(1 / share)
    written, since = 0, 0
    target = landing / f"part-new-{day.isoformat()}.json.gz"
    with gzip.open(target, "wt") as out:
        for path in sorted(landing.glob("part-0*.json.gz")):
            with gzip.open(path, "rt") as lines:
                for line in lines:
                    since += 1
                    event = _timed_event(line) if since >= every else None
                    if event is None:   # not due, or one of the generator's broken records: the next is due
                        continue
                    event["_id"] = f"new-{day.isoformat()}-{written}"
                    event["timestamp"] = f"{day.isoformat()}T{event['timestamp'].split('T', 1)[1]}"
                    out.write(json.dumps(event, separators=(",", ":")) + "\n")
                    written, since = written + 1, 0
    return written


def _timed_event(line: str) -> dict | None:
    """A landing line as an event with an ISO timestamp; None for a line that is not one."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    stamp = event.get("timestamp") if isinstance(event, dict) else None
    return event if isinstance(stamp, str) and "T" in stamp else None


def _one_size(target_events: int, events_per_person: float, days: int, min_labels: int, work: Path) -> dict:
    root = work / f"events-{target_events}" / "lakehouse"
    shutil.rmtree(root.parent, ignore_errors=True)
    root.parent.mkdir(parents=True)
    log = root.parent / "enrich.log"
    profiles = max(100, round(target_events / events_per_person))
    lake = ["--set", f"lakehouse.root={root}", "--set", f"quality.sufficiency.min_labels_per_class={min_labels}"]
    started = time.monotonic()
    _enrich(["generate", "--run-date", RUN_DATE.isoformat(), "--profiles", str(profiles), "--days", str(days),
             "--seed", "7", *lake], log)
    generate_seconds = round(time.monotonic() - started, 1)
    nights = {}
    for night, day in (("first", RUN_DATE), ("next", RUN_DATE + timedelta(days=1)),
                       ("new_events", RUN_DATE + timedelta(days=2))):
        if night == "new_events":
            added = new_events_file(root / "landing" / "events", day - timedelta(days=1))
            print(f"{target_events:,} events, {added:,} new events for the night after ...", flush=True)
        print(f"{target_events:,} events, {night} night ...", flush=True)
        memory = _enrich(["nightly", "--run-date", day.isoformat(), *lake], log)
        nights[night] = {"run_date": day.isoformat(), "peak_rss_mib": memory}
        if night == "new_events":
            nights[night]["new_events"] = added
    # The first load again, into an empty lakehouse that shares night 1's model registry: the
    # train step finds the versions trained for this date and reuses them. The night without
    # training, run as a night of its own rather than computed as night 1 less its train step.
    reload = root.parent / "reload"
    shutil.copytree(root / "landing", reload / "landing")
    print(f"{target_events:,} events, first load without training ...", flush=True)
    memory = _enrich(["nightly", "--run-date", RUN_DATE.isoformat(), "--set", f"lakehouse.root={reload}",
                      "--set", f"mlflow.tracking_uri=sqlite:///{root}/mlflow/mlflow.db",
                      "--set", f"mlflow.artifact_location={root}/mlflow/artifacts", *lake[2:]], log)
    nights["reload"] = {"run_date": RUN_DATE.isoformat(), "peak_rss_mib": memory, "root": str(reload)}
    for night in nights.values():
        cfg = load_config("local", overrides=[f"lakehouse.root={night.get('root', root)}"])
        spark = build_session(cfg)
        rows = (lakehouse.read(spark, cfg.table("runs"))
                .where(f"run_date = DATE'{night['run_date']}' AND status = 'succeeded'").collect())
        night["seconds"] = {row["step"]: round(row["seconds"], 1) for row in rows}
        night["total_seconds"] = round(sum(night["seconds"].values()), 1)
        night["without_training_seconds"] = round(night["total_seconds"] - night["seconds"].get("train", 0.0), 1)
        night.pop("root", None)
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    events = lakehouse.read(spark, cfg.table("silver_events")).count()
    people = lakehouse.read(spark, cfg.table("features")).where(f"as_of_date = DATE'{RUN_DATE}'").count()
    parquet = root.parent / "events-parquet"
    features_vs_duckdb.write_events(spark, cfg, parquet)
    side_by_side = _side_by_side(spark, cfg, parquet, f"{events:,} events", SIDE_BY_SIDES)
    return {"target_events": target_events, "profiles": profiles, "events": events, "people_with_features": people,
            "generate_seconds": generate_seconds, "nights": nights, "side_by_side": side_by_side,
            "measured": measured_stamp()}


def _when(size: dict) -> str:
    """When and at which commit a size was measured (sizes kept by --add keep theirs)."""
    return f"{size['events']:,} events {measured_when(size)}"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds else "-"


def _growth(sizes: list[dict], night: str, step: str) -> list[str]:
    """Time ratio of each size to the one before, per 10x events (a log-log slope, as a factor)."""
    out = []
    for before, after in pairwise(sizes):
        t0, t1 = before["nights"][night]["seconds"].get(step), after["nights"][night]["seconds"].get(step)
        if not t0 or not t1:
            out.append("-")
            continue
        per_10x = 10 ** (math.log10(t1 / t0) / math.log10(after["events"] / before["events"]))
        out.append(f"{per_10x:.1f}x" + ("" if per_10x <= MAX_GROWTH_PER_10X else " (over)"))
    return out


def _write(results: dict) -> str:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    sizes = results["sizes"]
    header = "| | " + " | ".join(f"{s['events']:,} events, {s['profiles']:,} people" for s in sizes) + " |"
    rule = "|---|" + "---:|" * len(sizes)
    lines = ["# The nightly at several sizes", "",
             f"{results['machine']}; `enrich nightly` in local mode (`conf/local.yaml`); people over "
             f"{results['days']} days; wall seconds per step from the run ledger; "
             f"`quality.sufficiency.min_labels_per_class={results['min_labels_per_class']}` so the smallest size "
             "can train.", "",
             "Measured: " + "; ".join(_when(s) for s in sizes) + ".", ""]
    for night, title in (("first", "Night 1: first load, every model trained"),
                         ("reload", "Night 1 again without training: the first load, models already trained"),
                         ("next", "Night 2: the next day, no new files, models reused"),
                         ("new_events", f"Night 3: the day after, {NEW_EVENTS_SHARE:.0%} new events, models reused")):
        lines += [f"## {title}", "", header, rule]
        lines += [f"| {step} | {_cells(sizes, night, lambda n, step=step: n['seconds'].get(step, '-'))} |"
                  for step in STEP_ORDER]
        lines += [f"| **without train** | {_cells(sizes, night, lambda n: n['without_training_seconds'], '**')} |",
                  f"| **whole night** | {_cells(sizes, night, lambda n: n['total_seconds'], '**')} |"]
        lines += [f"| peak RSS {kind.replace('_', ' ')} (MiB) | "
                  f"{_cells(sizes, night, lambda n, kind=kind: n['peak_rss_mib'][kind])} |"
                  for kind in ("driver_python", "jvm", "python_workers")]
        lines.append("")
    first = lambda s, step: s["nights"]["first"]["seconds"].get(step, 0.0)  # noqa: E731
    lines += ["## Throughput on night 1", "", header, rule,
              "| ingest, events/s | " + " | ".join(_rate(s["events"], first(s, "ingest")) for s in sizes) + " |",
              "| features, people/s | " + " | ".join(_rate(s["people_with_features"], first(s, "features"))
                                                    for s in sizes) + " |",
              "| score, people/s | " + " | ".join(_rate(s["people_with_features"], first(s, "score"))
                                                 for s in sizes) + " |",
              "| publish, people/s | " + " | ".join(_rate(s["people_with_features"], first(s, "publish"))
                                                   for s in sizes) + " |",
              "| generate (s, not part of the night) | " + " | ".join(str(s["generate_seconds"]) for s in sizes)
              + " |", ""]
    lines += ["## Feature building: Spark against DuckDB on the same Parquet events", "",
              "Both on every core, from reading the events to writing the feature rows as Parquet "
              "(bench/features_vs_duckdb.py); target: Spark within 4x at 10M events.", "", header, rule]
    duck = lambda s: s["side_by_side"]["features_vs_duckdb"]  # noqa: E731
    lines += ["| Spark (s): median of the runs (first run) | " + " | ".join(
                  _median_and_first(duck(s), "spark_seconds", "spark_runs") for s in sizes) + " |",
              "| DuckDB (s): median of the runs (first run) | " + " | ".join(
                  _median_and_first(duck(s), "duckdb_seconds", "duckdb_runs") for s in sizes) + " |",
              "| ratio: medians (first runs) | " + " | ".join(
                  f"{duck(s)['ratio']}x" + (f" ({duck(s)['first_run_ratio']}x)" if "first_run_ratio" in duck(s) else "")
                  for s in sizes) + " |",
              "| same rows and values | " + " | ".join(
                  "yes" if duck(s)["agree"] else f"no ({duck(s)['values_differing']} values)" for s in sizes) + " |",
              _measured_row(sizes, duck), ""]
    ltv = lambda s: s["side_by_side"]["ltv_vs_lifetimes"]  # noqa: E731
    lines += ["## Lifetime-value fit: Spark summaries against `lifetimes` on pandas", "",
              "From the same purchases as Parquet to fitted BG/NBD and Gamma-Gamma parameters "
              "(bench/ltv_vs_lifetimes.py); target: under a minute at 1M people, 20x faster, same parameters to "
              "3 significant digits.", "", header, rule,
              "| buyers | " + " | ".join(f"{ltv(s)['people']:,}" for s in sizes) + " |",
              "| Spark (s) | " + " | ".join(str(ltv(s)["spark_seconds"]) for s in sizes) + " |",
              "| lifetimes (s) | " + " | ".join(str(ltv(s)["library_seconds"]) for s in sizes) + " |",
              "| speed-up | " + " | ".join(f"{ltv(s)['speedup']}x" for s in sizes) + " |",
              "| fit alone, Spark / lifetimes (s) | " + " | ".join(
                  f"{ltv(s)['spark_fit_seconds']} / {ltv(s)['library_fit_seconds']}" if "spark_fit_seconds" in ltv(s)
                  else "-" for s in sizes) + " |",
              _measured_row(sizes, ltv),
              "| largest relative difference of a parameter | " + " | ".join(
                  f"{ltv(s)['max_relative_difference']:.1e}" + ("" if ltv(s)["agree"] else " (disagree)")
                  for s in sizes) + " |", ""]
    sk = lambda s: s["side_by_side"]["propensity_vs_sklearn"]  # noqa: E731
    pandas_cell = lambda s, key: str(sk(s)["pandas"][key]) if sk(s)["pandas"]["finished"] else "did not finish"  # noqa: E731
    lines += ["## Propensity to convert end to end: Spark against pandas + scikit-learn", "",
              "From the same Parquet events: features at every training date and the holdout, labels, "
              "gradient-boosted trees with the conf's settings, holdout AUC (bench/propensity_vs_sklearn.py).",
              "", header, rule,
              "| training rows | " + " | ".join(f"{sk(s)['spark']['training_rows']:,}" for s in sizes) + " |",
              "| Spark (s) | " + " | ".join(str(sk(s)["spark"]["seconds"]) for s in sizes) + " |",
              "| pandas + scikit-learn (s) | " + " | ".join(pandas_cell(s, "seconds") for s in sizes) + " |",
              "| Spark holdout AUC | " + " | ".join(str(sk(s)["spark"]["holdout_auc"]) for s in sizes) + " |",
              "| scikit-learn holdout AUC | " + " | ".join(pandas_cell(s, "holdout_auc") for s in sizes) + " |",
              "| pandas process peak RSS (MiB) | " + " | ".join(pandas_cell(s, "peak_rss_mib") for s in sizes) + " |",
              ""]
    if len(sizes) > 1:
        pairs = " | ".join(f"{a['events']:,} -> {b['events']:,}" for a, b in pairwise(sizes))
        lines += ["## Growth per 10x events (target: at most 12x)", "", f"| step (night 1) | {pairs} |",
                  "|---|" + "---:|" * (len(sizes) - 1)]
        lines += [f"| {step} | " + " | ".join(_growth(sizes, "first", step)) + " |" for step in STEP_ORDER]
        lines.append("")
    lines += _targets(sizes)
    lines += ["![Night 1 per step against size](results/nightly_scaling.png)", ""]
    text = "\n".join(lines) + "\n"
    (HERE / "results.md").write_text(text + "\n" + (HERE / "findings.md").read_text())
    _plot(sizes, out / "nightly_scaling.png")
    return text


def _cells(sizes: list[dict], night: str, value: Callable[[dict], object], mark: str = "") -> str:
    """One table row's cells: `value` of each size's `night`; "-" for a size measured before
    that night was part of the bench."""
    return " | ".join(f"{mark}{value(s['nights'][night])}{mark}" if night in s["nights"] else "-" for s in sizes)


def _median_and_first(side: dict, median_key: str, runs_key: str) -> str:
    """`median (first)` of a side by side's runs; a side measured once shows its one run."""
    if runs_key not in side:
        return f"{side[median_key]} (one run)"
    return f"{side[median_key]} ({side[runs_key][0]}), {len(side[runs_key])} runs"


def _measured_row(sizes: list[dict], side: Callable[[dict], dict]) -> str:
    return "| measured | " + " | ".join(
        f"rerun {measured_when(side(s))}" if "measured" in side(s) else "with the nights" for s in sizes) + " |"


def _targets(sizes: list[dict]) -> list[str]:
    """The two nightly targets, judged on the size nearest 1M events (within a factor of 2),
    and feature building against DuckDB, on the largest size if it is near 10M events."""
    verdict = lambda value, limit: "met" if value <= limit else "missed"  # noqa: E731
    lines = ["## Targets", ""]
    nearest = min(sizes, key=lambda s: abs(math.log(s["events"] / TARGET_EVENTS)))
    if abs(math.log(nearest["events"] / TARGET_EVENTS)) > math.log(2):
        lines += [f"The nights are judged at about {TARGET_EVENTS:,} events; no size near it was measured.", ""]
    else:
        whole = nearest["nights"]["first"]["total_seconds"]
        if "reload" in nearest["nights"]:
            without = nearest["nights"]["reload"]["total_seconds"]
            how = "the first load as a night of its own, models already trained"
        else:
            without = nearest["nights"]["first"]["without_training_seconds"]
            how = "night 1 less its train step"
        lines += [f"On {nearest['events']:,} events (the first load):", "",
                  f"- ingest to publish without training ({how}): {without} s against {TARGET_WITHOUT_TRAINING_S} s: "
                  f"{verdict(without, TARGET_WITHOUT_TRAINING_S)}",
                  f"- the whole night with training: {whole} s against {TARGET_WITH_TRAINING_S} s: "
                  f"{verdict(whole, TARGET_WITH_TRAINING_S)}", ""]
    largest = max(sizes, key=lambda s: s["events"])
    nights = largest["nights"]
    if "new_events" in nights:
        ratio = round(nights["new_events"]["total_seconds"] / nights["next"]["total_seconds"], 2)
        lines += [f"On {largest['events']:,} events (models reused):", "",
                  f"- a night with {nights['new_events']['new_events']:,} new events ({NEW_EVENTS_SHARE:.0%}): "
                  f"{nights['new_events']['total_seconds']} s, {ratio}x the night with none "
                  f"({nights['next']['total_seconds']} s) against {TARGET_NEW_EVENTS_RATIO}x: "
                  f"{verdict(ratio, TARGET_NEW_EVENTS_RATIO)}",
                  f"- the usual night (no new files): {nights['next']['total_seconds']} s against "
                  f"{TARGET_USUAL_NIGHT_S} s at 10M events: "
                  f"{verdict(nights['next']['total_seconds'], TARGET_USUAL_NIGHT_S)}",
                  ""]
    features = largest["side_by_side"].get("features_vs_duckdb")
    if features and abs(math.log(largest["events"] / TARGET_DUCKDB_EVENTS)) <= math.log(2):
        first_runs = features.get("first_run_ratio")
        first = (f"; first runs {first_runs}x, {verdict(first_runs, TARGET_DUCKDB_RATIO)}" if first_runs
                 else " (one run each)")
        lines += [f"On {largest['events']:,} events:", "",
                  f"- feature building, Spark against DuckDB: {features['ratio']}x against {TARGET_DUCKDB_RATIO:g}x: "
                  f"{verdict(features['ratio'], TARGET_DUCKDB_RATIO)}{first}", ""]
    return lines


def _plot(sizes: list[dict], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    events = [s["events"] for s in sizes]
    for step in STEP_ORDER:
        seconds = [s["nights"]["first"]["seconds"].get(step) for s in sizes]
        axes.plot(events, seconds, marker="o", label=step)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("events (log)")
    axes.set_ylabel("step wall time, s (log)")
    axes.set_title("Night 1 (first load) per step against size")
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# Each side by side: the name --rerun takes, its key in the results, and what it compares.
SIDE_BY_SIDES = {"features": ("features_vs_duckdb", "features with Spark and with DuckDB"),
                 "ltv": ("ltv_vs_lifetimes", "lifetime-value fit with Spark and with lifetimes"),
                 "propensity": ("propensity_vs_sklearn", "propensity with Spark and with pandas + scikit-learn")}


def _side_by_side(spark, cfg, parquet: Path, label: str, which) -> dict:
    """The chosen comparisons on one size's events Parquet, by result key."""
    compare = {"features": lambda: features_vs_duckdb.compare(spark, cfg, RUN_DATE, parquet, parquet.parent / "duckdb"),
               "ltv": lambda: ltv_vs_lifetimes.compare(spark, cfg, RUN_DATE, parquet),
               "propensity": lambda: propensity_vs_sklearn.compare(spark, cfg, RUN_DATE, parquet)}
    results = {}
    for name in which:
        key, what = SIDE_BY_SIDES[name]
        print(f"{label}: {what} ...", flush=True)
        results[key] = compare[name]()
    return results


def _rerun(work: Path, which: list[str]) -> None:
    """Side by sides again on the events a night run left, after a change to the code they
    time; each rerun carries its own stamp, the nights keep theirs."""
    results = json.loads((HERE / "results.json").read_text())
    cfg = load_config("local", overrides=[f"lakehouse.root={work / 'side-by-side-rerun'}"])
    spark = build_session(cfg)
    parquets = {size["target_events"]: work / f"events-{size['target_events']}" / "events-parquet"
                for size in results["sizes"]}
    present = [size for size in results["sizes"] if parquets[size["target_events"]].is_dir()]
    if present:
        # Untimed: a fresh session's first jobs load classes and compile code, which the nights'
        # run had paid for before its side by sides.
        _side_by_side(spark, cfg, parquets[present[0]["target_events"]], "warm-up (untimed)", which)
    for size in present:
        measured = _side_by_side(spark, cfg, parquets[size["target_events"]], f"{size['events']:,} events", which)
        size["side_by_side"].update({key: {**value, "measured": measured_stamp()} for key, value in measured.items()})
    print(_write(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", help="sizes in events (default: conf bench.event_sizes)")
    parser.add_argument("--days", type=int, help="days of history (default: conf bench.days)")
    parser.add_argument("--add", action="store_true",
                        help="keep the other sizes of bench/results.json (same machine and days) beside these")
    parser.add_argument("--work", default=str(HERE / "work" / "nightly"))
    parser.add_argument("--rerun", nargs="+", choices=list(SIDE_BY_SIDES),
                        help="only rerun these side by sides for the sizes in bench/results.json whose events "
                             "Parquet is under --work, and rewrite the results")
    args = parser.parse_args()
    if args.rerun:
        _rerun(Path(args.work), args.rerun)
        return
    bench_cfg = load_config("local").get("bench")
    sizes, days = sorted(args.events or bench_cfg["event_sizes"]), int(args.days or bench_cfg["days"])
    results = {"machine": machine(),
               "days": days, "min_labels_per_class": int(bench_cfg["min_labels_per_class"]), "sizes": []}
    kept = []
    if args.add and (HERE / "results.json").exists():
        earlier = json.loads((HERE / "results.json").read_text())
        if {k: earlier.get(k) for k in ("machine", "days", "min_labels_per_class")} != \
                {k: results[k] for k in ("machine", "days", "min_labels_per_class")}:
            raise SystemExit("--add: bench/results.json was measured on another machine or settings; run without it")
        kept = [s for s in earlier["sizes"] if s["target_events"] not in sizes]
    events_per_person = EVENTS_PER_PERSON_YEAR * days / 365
    measured = []
    for target in sizes:
        size = _one_size(target, events_per_person, days, int(bench_cfg["min_labels_per_class"]), Path(args.work))
        events_per_person = size["events"] / size["profiles"]
        measured.append(size)
        results["sizes"] = sorted(kept + measured, key=lambda s: s["events"])
        text = _write(results)
    print(text)

if __name__ == "__main__":
    main()
