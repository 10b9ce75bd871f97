"""The validate step: what bronze gained since the last validation, against the bronze suites.

"Since the last validation" rather than "ingested for this run date": a night that crashed
after ingest and was never resumed left rows no validation has seen; the next one checks
them. The last validated version of each table is what the latest validate step (passed or
blocked) read, from the run ledger; the rows since come from bronze's change feed."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from pipelines.core import lakehouse
from pipelines.core.config import Config
from pipelines.core.errors import BadInputError
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.quality.views import bronze_events_view, bronze_profiles_view


def run(ctx: RunContext) -> dict[str, float]:
    cfg, spark = ctx.cfg, ctx.spark
    bronze = cfg.get("quality.bronze")
    namespaces = list(cfg.get("identity.namespace_priority"))
    # Events of the night's export end before the run date starts.
    latest = datetime.combine(ctx.run_date, time.min) - timedelta(microseconds=1)
    events_path, profiles_path = cfg.table("bronze_events"), cfg.table("bronze_profiles")
    if not (lakehouse.exists(spark, events_path) or lakehouse.exists(spark, profiles_path)):
        raise BadInputError(f"nothing to validate: neither {events_path} nor {profiles_path} exists "
                            "(run `enrich ingest` first)")
    with QualityChecks(ctx) as checks:
        # A source may export one kind only: each suite runs on the table that exists.
        validated = last_validated_versions(spark, cfg)
        if lakehouse.exists(spark, events_path):
            events = (rows_since(spark, events_path, validated.get("bronze_events"))
                      .transform(bronze_events_view(bronze["currency_codes"], namespaces)))
            checks.run_suite("bronze_events", events, {
                "earliest_event_time": datetime.fromisoformat(str(bronze["earliest_event_date"])),
                "latest_event_time": latest,
                "event_types": list(bronze["event_types"]),
            })
        if lakehouse.exists(spark, profiles_path):
            profiles = (rows_since(spark, profiles_path, validated.get("bronze_profiles"))
                        .transform(bronze_profiles_view(namespaces)))
            checks.run_suite("bronze_profiles", profiles, {
                "latest_event_time": latest,
                "min_birth_year": int(bronze["min_birth_year"]),
                "max_birth_year": ctx.run_date.year,
            })
        checks.enforce()
        return checks.outputs()


def last_validated_versions(spark: SparkSession, cfg: Config) -> dict[str, int]:
    """Per bronze table, the version the latest validate step read (from `ops/runs`)."""
    path = cfg.table("runs")
    if not lakehouse.exists(spark, path):
        return {}
    read = F.col("details")
    row = (lakehouse.read(spark, path).where(F.col("step") == "validate")
           .agg(*[F.max(F.get_json_object(read, f"$.versions_read.{table}").cast("long")).alias(table)
                  for table in ("bronze_events", "bronze_profiles")]).first())
    return {table: int(row[table]) for table in ("bronze_events", "bronze_profiles") if row and row[table] is not None}


def rows_since(spark: SparkSession, path: str, version: int | None) -> DataFrame:
    """The rows a bronze table gained after `version` (all of them when None), from its change
    feed: bronze is insert-only, so its inserts are what it gained."""
    latest = lakehouse.version(spark, path)
    table = lakehouse.read(spark, path)
    if version is None:
        return table
    if version >= latest:
        return table.limit(0)
    changes = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", version + 1)
               .load(path).where(F.col("_change_type") == "insert"))
    return changes.select(*table.columns)
