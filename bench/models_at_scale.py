"""Training, scoring and MERGE time against the number of people.

    .venv/bin/python bench/models_at_scale.py --profiles 100000 1000000
    .venv/bin/python bench/models_at_scale.py --profiles 1000000 --add --conf bench/heap-16g.yaml  # keeps the rest

For each size: generate that many people over `--days`, buying from a catalogue of
`--products` products (10,000 by default), run ingest, validate and
features (not timed), then, each timed from the command's start to its end:
`enrich train --model NAME` for every model on its own (MLflow logging included);
`enrich score` and `enrich publish` for the run date (the first MERGE: every person
inserted); then, after the next day's features (not timed), `score` and `publish` for
that day (a MERGE that updates every person in a full table), as a nightly does.
Writes bench/results/models_at_scale.{json,md} after every size (`--models` trains only
those, `--name` names the results instead). `--conf FILE` layers a
configuration file over conf/local.yaml for every command (a larger heap for the largest
size, say); each size records the files it ran with.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

from pipelines.core import lakehouse
from provenance import machine, measured_stamp, measured_when  # bench/, beside this file
from pipelines.cli import main as enrich
from pipelines.core.config import load_config
from pipelines.models.specs import model_names
from pipelines.core.session import build_session

HERE = Path(__file__).resolve().parent
RUN_DATE = date(2026, 6, 1)


def _one_size(profiles: int, days: int, products: int, work: Path, conf_files: list[str],
              models: list[str] | None) -> dict:
    root = work / f"people-{profiles}" / "lakehouse"
    shutil.rmtree(root.parent, ignore_errors=True)
    conf_args = [arg for file in conf_files for arg in ("--conf", file)]
    common = ["--run-date", RUN_DATE.isoformat(), *conf_args, "--set", f"lakehouse.root={root}"]
    assert enrich(["generate", "--profiles", str(profiles), "--days", str(days), "--products", str(products),
                   "--seed", "7", *common]) == 0
    for step in ("ingest", "validate", "features"):
        assert enrich([step, *common]) == 0, step
    cfg = load_config("local", files=conf_files, overrides=[f"lakehouse.root={root}"])
    spark = build_session(cfg)
    events = lakehouse.read(spark, cfg.table("silver_events")).count()
    active = lakehouse.read(spark, cfg.table("features")).count()
    seconds = {}
    for name in models or model_names(cfg):
        seconds[f"train {name}"] = _timed(["train", "--model", name, *common])
    seconds["score (first night)"] = _timed(["score", *common])
    seconds["publish (first MERGE)"] = _timed(["publish", *common])
    next_day = ["--run-date", (RUN_DATE + timedelta(days=1)).isoformat(), *common[2:]]
    assert enrich(["features", *next_day]) == 0
    seconds["score (next night)"] = _timed(["score", *next_day])
    seconds["publish (next MERGE)"] = _timed(["publish", *next_day])
    profiles_published = lakehouse.read(spark, cfg.table("profile_enrichment")).count()
    return {"profiles": profiles, "events": events, "people_with_features": active,
            "profiles_published": profiles_published, "seconds": seconds, "measured": measured_stamp(),
            "products": products, "conf_files": [Path(file).name for file in conf_files]}


def _timed(argv: list[str]) -> float:
    started = time.monotonic()
    assert enrich(argv) == 0, argv
    return round(time.monotonic() - started, 1)


def _write(results: dict, name: str) -> str:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    sizes = results["sizes"]
    steps = list(dict.fromkeys(step for s in sizes for step in s["seconds"]))   # a newer size may train more
    lines = ["# Training, scoring and MERGE time against the number of people", "",
             f"{results['machine']}; people over {results['days']} days; wall seconds per command.", "",
             "| command | " + " | ".join(f"{s['profiles']:,} people ({s['events']:,} events)" for s in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    lines += [f"| `{step}` | " + " | ".join(str(s["seconds"].get(step, "not built")) for s in sizes) + " |"
              for step in steps]
    lines += ["", "| people with features | " + " | ".join(f"{s['people_with_features']:,}" for s in sizes) + " |",
              "| profiles published | " + " | ".join(f"{s['profiles_published']:,}" for s in sizes) + " |", ""]
    lines += [f"Measured: {s['profiles']:,} people {measured_when(s)}{_conf_note(s)}"
              + (f", a catalogue of {s['products']:,} products" if "products" in s else "") + "." for s in sizes]
    text = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(text)
    return text


def _conf_note(size: dict) -> str:
    files = size.get("conf_files") or []
    return f", with {', '.join(f'`{name}`' for name in files)} over the local conf" if files else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, nargs="+", default=[100000, 1000000])
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--products", type=int, default=10000, help="catalogue size")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="train only these (default: every model)")
    parser.add_argument("--name", default="models_at_scale", help="results file name under bench/results/")
    parser.add_argument("--add", action="store_true",
                        help="keep the other sizes of the results file (same machine and days)")
    parser.add_argument("--work", default=str(HERE / "work" / "models_at_scale"))
    parser.add_argument("--conf", action="append", default=[], metavar="FILE",
                        help="a configuration file layered over conf/local.yaml for every command")
    args = parser.parse_args()
    results = {"machine": machine(),
               "days": args.days, "sizes": []}
    kept = []
    earlier_file = HERE / "results" / f"{args.name}.json"
    if args.add and earlier_file.exists():
        earlier = json.loads(earlier_file.read_text())
        if (earlier["machine"], earlier["days"]) != (results["machine"], results["days"]):
            raise SystemExit(f"--add: {earlier_file} was measured on another machine or with other --days; "
                             "run without --add")
        kept = [s for s in earlier["sizes"] if s["profiles"] not in args.profiles]
    measured = []
    # Written after every size, so a long large size never costs the smaller ones' figures.
    for profiles in args.profiles:
        measured.append(_one_size(profiles, args.days, args.products, Path(args.work), args.conf, args.models))
        results["sizes"] = sorted(kept + measured, key=lambda s: s["profiles"])
        text = _write(results, args.name)
    print(text)


if __name__ == "__main__":
    main()
