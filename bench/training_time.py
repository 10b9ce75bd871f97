"""Training time per model against the number of people.

    .venv/bin/python bench/training_time.py --profiles 100000 1000000

For each size: generate that many people over `--days`, run ingest, validate and
features, then `enrich train --model NAME` for every model on its own, timed from the
command's start to its end (MLflow logging included). Writes bench/results/training.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from datetime import date
from pathlib import Path

from pipelines import lakehouse
from pipelines.cli import main as enrich
from pipelines.config import load_config
from pipelines.models.specs import model_names
from pipelines.session import build_session

HERE = Path(__file__).resolve().parent
RUN_DATE = date(2026, 6, 1)


def _one_size(profiles: int, days: int, work: Path) -> dict:
    root = work / f"people-{profiles}" / "lakehouse"
    shutil.rmtree(root.parent, ignore_errors=True)
    common = ["--run-date", RUN_DATE.isoformat(), "--set", f"lakehouse.root={root}"]
    assert enrich(["generate", "--profiles", str(profiles), "--days", str(days), "--seed", "7", *common]) == 0
    for step in ("ingest", "validate", "features"):
        assert enrich([step, *common]) == 0, step
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    spark = build_session(cfg)
    events = lakehouse.read(spark, cfg.table("silver_events")).count()
    active = lakehouse.read(spark, cfg.table("features")).count()
    seconds = {}
    for name in model_names(cfg):
        started = time.monotonic()
        assert enrich(["train", "--model", name, *common]) == 0, name
        seconds[name] = round(time.monotonic() - started, 1)
    return {"profiles": profiles, "events": events, "people_with_features": active, "train_seconds": seconds}


def _write(results: dict) -> str:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "training.json").write_text(json.dumps(results, indent=2) + "\n")
    sizes = results["sizes"]
    models = list(sizes[0]["train_seconds"])
    lines = ["# Training time per model", "",
             f"{results['machine']}; people over {results['days']} days; "
             "`enrich train --model NAME`, wall seconds.", "",
             "| people | events | " + " | ".join(models) + " |", "|---:|---:|" + "---:|" * len(models)]
    lines += [f"| {s['profiles']:,} | {s['events']:,} | " + " | ".join(str(s["train_seconds"][m]) for m in models)
              + " |" for s in sizes]
    text = "\n".join(lines) + "\n"
    (out / "training.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, nargs="+", default=[100000, 1000000])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--work", default=str(HERE / "work" / "training"))
    args = parser.parse_args()
    results = {"machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
               "days": args.days, "sizes": []}
    # Written after every size, so a long large size never costs the smaller ones' figures.
    for profiles in args.profiles:
        results["sizes"].append(_one_size(profiles, args.days, Path(args.work)))
        text = _write(results)
    print(text)


if __name__ == "__main__":
    main()
