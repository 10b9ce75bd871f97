"""What the model-quality work costs in training time: each propensity and lifetime value
trained on the same lakehouse with and without it, alternately.

    .venv/bin/python bench/training_cost.py --profiles 100000 [--rounds 1]

One lakehouse of `--profiles` people (generate, ingest, validate, features; not timed);
then, for each round, `enrich train --model NAME` for convert, churn and lifetime value,
first as the pipeline was before (no customer-base features, BG/NBD the only counting
model), then as it is, each under its own registered name so no training reuses another's
version. Writes bench/results/training_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from datetime import date
from pathlib import Path

from pipelines.cli import main as enrich
from provenance import machine, measured_stamp, measured_when  # bench/, beside this file

HERE = Path(__file__).resolve().parent
RUN_DATE = date(2026, 6, 1)
MODELS = ("convert_propensity", "churn_propensity", "lifetime_value")
WAYS = {
    "before": ["features.customer_base=false", "models.lifetime_value.counting_models=[bgnbd]"],
    "now": [],
}


def _timed(argv: list[str]) -> float:
    started = time.monotonic()
    assert enrich(argv) == 0, argv
    return round(time.monotonic() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work", default=str(HERE / "work" / "training_cost"))
    args = parser.parse_args()
    root = Path(args.work) / "lakehouse"
    shutil.rmtree(root.parent, ignore_errors=True)
    common = ["--run-date", RUN_DATE.isoformat(), "--set", f"lakehouse.root={root}"]
    assert enrich(["generate", "--profiles", str(args.profiles), "--days", str(args.days), "--seed", "7",
                   *common]) == 0
    for step in ("ingest", "validate", "features"):
        assert enrich([step, *common]) == 0, step
    seconds: dict[str, dict[str, list[float]]] = {m: {way: [] for way in WAYS} for m in MODELS}
    for round_number in range(args.rounds):
        for way, settings in WAYS.items():
            for model in MODELS:
                name = f"{model}_{way}_{round_number}"
                overrides = [arg for s in [*settings, f"models.{model}.registered_name={name}"] for arg in ("--set", s)]
                seconds[model][way].append(_timed(["train", "--model", model, *common, *overrides]))
                print(f"{model} ({way}, round {round_number + 1}): {seconds[model][way][-1]} s", flush=True)
    results = {"machine": machine(), "profiles": args.profiles, "days": args.days, "rounds": args.rounds,
               "seconds": seconds, "measured": measured_stamp()}
    out = HERE / "results"
    (out / "training_cost.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Training time with and without the model-quality work", "",
             f"{results['machine']}; {args.profiles:,} people over {args.days} days, one lakehouse; "
             f"`enrich train --model NAME`, wall seconds, median of {args.rounds} alternated round(s). Before: "
             "no customer-base features, BG/NBD the only counting model. Now: the default conf.", "",
             "| model | before | now | growth |", "|---|---:|---:|---:|"]
    for model in MODELS:
        before, now = (statistics.median(seconds[model][way]) for way in WAYS)
        lines.append(f"| `{model}` | {before:.1f} | {now:.1f} | {now / before - 1:+.0%} |")
    lines += ["", f"Measured: {measured_when(results)}."]
    text = "\n".join(lines) + "\n"
    (out / "training_cost.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
