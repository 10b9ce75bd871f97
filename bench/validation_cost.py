"""What the quality checks cost: their share of one nightly run's time on this machine.

    .venv/bin/python bench/validation_cost.py --profiles 20000 --days 365

Runs generate + nightly on a fresh lakehouse, then reads the run ledger (`ops/runs`):
the validate step counts whole; every other step reports the seconds its checks took
(`dq_seconds`: GX suites, drift, model gates). Writes bench/results/validation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import date
from pathlib import Path

from pipelines.core import lakehouse
from pipelines.cli import STEP_ORDER
from pipelines.cli import main as enrich
from pipelines.core.config import load_config
from pipelines.core.session import build_session
from provenance import machine  # bench/, beside this file

HERE = Path(__file__).resolve().parent
RUN_DATE = date(2026, 6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=20000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--work", default=str(HERE / "work" / "validation"))
    args = parser.parse_args()
    root = Path(args.work) / "lakehouse"
    shutil.rmtree(root.parent, ignore_errors=True)
    common = ["--run-date", RUN_DATE.isoformat(), "--set", f"lakehouse.root={root}"]
    assert enrich(["generate", "--profiles", str(args.profiles), "--days", str(args.days), "--seed", "7",
                   *common]) == 0
    assert enrich(["nightly", *common]) == 0
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    ledger = lakehouse.read(build_session(cfg), cfg.table("runs")).where("status = 'succeeded'").collect()
    steps = {}
    for row in ledger:
        checks = row["seconds"] if row["step"] == "validate" else (row["metrics"] or {}).get("dq_seconds", 0.0)
        steps[row["step"]] = {"seconds": round(row["seconds"], 1), "check_seconds": round(checks, 1),
                              "checks": int((row["metrics"] or {}).get("dq_checks", 0))}
    total = sum(s["seconds"] for s in steps.values())
    checking = sum(s["check_seconds"] for s in steps.values())
    results = {"machine": machine(),
               "profiles": args.profiles, "days": args.days, "steps": steps,
               "nightly_seconds": round(total, 1), "check_seconds": round(checking, 1),
               "check_share": round(checking / total, 3)}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "validation.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Cost of the quality checks", "",
             f"{results['machine']}; {args.profiles} people over {args.days} days; one nightly run from empty.", "",
             "| step | step (s) | checks | checking (s) |", "|---|---:|---:|---:|"]
    for name in STEP_ORDER:
        s = steps[name]
        lines.append(f"| {name} | {s['seconds']} | {s['checks']} | {s['check_seconds']} |")
    lines.append(f"| **nightly** | **{results['nightly_seconds']}** | | **{results['check_seconds']}** "
                 f"({results['check_share']:.0%}) |")
    (out / "validation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
