"""The run ledger `ops/runs`: one row per step per invocation, success or failure.

The ledger is a log: a rerun adds rows (every other table converges to the same
content). It also fixes the run's clock: every row carries the clock of the first run for its
run date, and `run_clock` returns it, so a rerun stamps its rows with the same time
and run id.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Sequence

import pyspark.sql.functions as F
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from pipelines.core import lakehouse
from pipelines.core.config import Config
from pipelines.core.context import RunContext

LEDGER_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()),
    T.StructField("run_date", T.DateType()),
    T.StructField("run_clock", T.TimestampType()),
    T.StructField("step", T.StringType()),
    T.StructField("status", T.StringType()),
    T.StructField("started_at", T.TimestampType()),
    T.StructField("ended_at", T.TimestampType()),
    T.StructField("seconds", T.DoubleType()),
    T.StructField("metrics", T.MapType(T.StringType(), T.DoubleType())),
    T.StructField("details", T.StringType()),
    T.StructField("message", T.StringType()),
    T.StructField("invocation", T.StringType()),   # one id per `enrich` command run
    T.StructField("command", T.StringType()),      # nightly, backfill, or the step's own name
])

# The tables each step reads and writes; their Delta versions go into the ledger row, so a
# run can be reproduced with time travel and a reader can see what a step produced.
STEP_TABLES = {
    "ingest": ((), ("bronze_events", "bronze_profiles", "quarantine", "ingested_files", "identity_graph",
                    "silver_events", "silver_profiles")),
    "validate": (("bronze_events", "bronze_profiles"), ()),
    "features": (("silver_events",), ("features",)),
    "train": (("features", "silver_events"), ("training_sets",)),
    "score": (("features",), ("scores", "predictions", "lifetime_value", "affinity", "product_affinity",
                              "content_affinity", "segments")),
    "publish": (("scores", "predictions", "lifetime_value", "affinity", "product_affinity", "content_affinity",
                  "segments", "identity_graph", "features"),
                ("profile_enrichment",)),
}


def table_versions(spark: SparkSession, cfg: Config, names: Sequence[str]) -> dict[str, int]:
    """Current Delta version of each named table that exists."""
    versions = {name: lakehouse.version(spark, cfg.table(name)) for name in names}
    return {name: v for name, v in versions.items() if v is not None}


def new_run_id(run_date: date, clock: datetime) -> str:
    """`<run date>@<when its first run started, UTC>`, e.g. 2026-11-27@20261128T010203."""
    return f"{run_date.isoformat()}@{clock.strftime('%Y%m%dT%H%M%S')}"


def record_step(ctx: RunContext, status: str, started: datetime, ended: datetime, outputs: dict | None = None,
                message: str | None = None) -> None:
    """Append one ledger row for `ctx.step`; numeric outputs go to `metrics`, the rest to
    `details` (JSON)."""
    spark, cfg = ctx.spark, ctx.cfg
    outputs = outputs or {}
    numbers = {k: float(v) for k, v in outputs.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    others = {k: v for k, v in outputs.items() if k not in numbers}
    row = (ctx.run_id, ctx.run_date, ctx.clock, ctx.step, status, started, ended, (ended - started).total_seconds(),
           numbers, json.dumps(others, default=str, sort_keys=True), message, ctx.invocation, ctx.command)
    # Ledgers of earlier releases lack the newer columns; appending adds them.
    lakehouse.append(spark.createDataFrame([row], LEDGER_SCHEMA), cfg.table("runs"), merge_schema=True,
                     properties=lakehouse.stats_on("run_date", "step"))


def run_clock(spark: SparkSession, cfg: Config, run_date: date, default: datetime) -> datetime:
    """The clock of the first run recorded for `run_date`, else `default` (this run is the first)."""
    path = cfg.table("runs")
    if not lakehouse.exists(spark, path):
        return default
    first = (spark.read.format("delta").load(path)
             .where(F.col("run_date") == F.lit(run_date))
             .agg(F.min("run_clock")).first()[0])
    return first or default
