"""Ingest throughput on this machine: landing files -> bronze + silver, in events per second,
for gzip JSON lines and for the same events as Parquet.

    .venv/bin/python bench/ingest_throughput.py --profiles 20000 --days 365

Writes bench/results/ingest.json and bench/results/ingest.md. Times come from the run
ledger (`ops/runs`), so they are the step's own wall time, without Python start-up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import date
from pathlib import Path

import pyspark.sql.functions as F

from pipelines.core import lakehouse
from pipelines.cli import main as enrich
from pipelines.core.config import load_config
from pipelines.core.session import build_session
from provenance import machine  # bench/, beside this file

HERE = Path(__file__).resolve().parent
RUN_DATE = date(2026, 6, 1)


def _ingest(root: Path) -> dict:
    started = time.monotonic()
    assert enrich(["ingest", "--run-date", RUN_DATE.isoformat(), "--set", f"lakehouse.root={root}"]) == 0
    wall = time.monotonic() - started
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    spark = build_session(cfg)
    row = lakehouse.read(spark, cfg.table("runs")).where("step = 'ingest'").orderBy(F.col("ended_at").desc()).first()
    metrics = row["metrics"]
    return {"seconds": round(row["seconds"], 1), "wall_seconds": round(wall, 1),
            "records_in": int(metrics["events_records_in"]), "inserted": int(metrics["events_inserted"]),
            "events_per_second": round(metrics["events_records_in"] / row["seconds"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=20000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--work", default=str(HERE / "work" / "ingest"))
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    json_root, parquet_root = work / "json" / "lakehouse", work / "parquet" / "lakehouse"
    assert enrich(["generate", "--profiles", str(args.profiles), "--days", str(args.days), "--seed", "7",
                   "--run-date", RUN_DATE.isoformat(), "--set", f"lakehouse.root={json_root}"]) == 0
    cfg = load_config("local", overrides=[f"lakehouse.root={json_root}"])
    spark = build_session(cfg)
    # The same events as Parquet, the way an export job would write them (schema inferred).
    for kind in ("events", "profiles"):
        (spark.read.json(cfg.landing(kind)).write.mode("overwrite")
         .parquet(str(parquet_root / "landing" / kind)))
    results = {"machine": machine(),
               "profiles": args.profiles, "days": args.days,
               "json_lines_gzip": _ingest(json_root), "parquet": _ingest(parquet_root)}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Ingest throughput", "",
             f"{results['machine']}; {args.profiles} people over {args.days} days; ingest = landing -> bronze, "
             "quarantine, identity graph, silver.", "",
             "| landing format | records | ingest step (s) | events/s |", "|---|---:|---:|---:|"]
    for name in ("json_lines_gzip", "parquet"):
        r = results[name]
        label = name.replace("_", " ")
        lines.append(f"| {label} | {r['records_in']:,} | {r['seconds']} | {r['events_per_second']:,} |")
    (out / "ingest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
