"""The validate step: what this run ingested into bronze, against the bronze suites."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pyspark.sql.functions as F

from pipelines.core import lakehouse
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.quality.views import bronze_events_view, bronze_profiles_view


def run(ctx: RunContext) -> dict[str, float]:
    cfg, spark = ctx.cfg, ctx.spark
    bronze = cfg.get("quality.bronze")
    namespaces = list(cfg.get("identity.namespace_priority"))
    # Events of the night's export end before the run date starts.
    latest = datetime.combine(ctx.run_date, time.min) - timedelta(microseconds=1)
    with QualityChecks(ctx) as checks:
        events = (lakehouse.read(spark, cfg.table("bronze_events"), "ingest")
                  .where(F.col("_ingest_run_date") == F.lit(ctx.run_date))
                  .transform(bronze_events_view(bronze["currency_codes"], namespaces)))
        checks.run_suite("bronze_events", events, {
            "earliest_event_time": datetime.fromisoformat(str(bronze["earliest_event_date"])),
            "latest_event_time": latest,
            "event_types": list(bronze["event_types"]),
        })
        profiles_path = cfg.table("bronze_profiles")
        if lakehouse.exists(spark, profiles_path):
            profiles = (lakehouse.read(spark, profiles_path)
                        .where(F.col("_ingest_run_date") == F.lit(ctx.run_date))
                        .transform(bronze_profiles_view(namespaces)))
            checks.run_suite("bronze_profiles", profiles, {
                "latest_event_time": latest,
                "min_birth_year": int(bronze["min_birth_year"]),
                "max_birth_year": ctx.run_date.year,
            })
        checks.enforce()
        return checks.outputs()
