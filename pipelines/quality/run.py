"""The validate step: the bronze events of this run against the `bronze_events` suite."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta

import pyspark.sql.functions as F
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from pipelines import lakehouse
from pipelines.errors import GateError
from pipelines.ops.context import RunContext
from pipelines.quality.suites import ExpectationOutcome, load_suite, validate

DQ_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()),
    T.StructField("run_date", T.DateType()),
    T.StructField("suite", T.StringType()),
    T.StructField("expectation", T.StringType()),
    T.StructField("severity", T.StringType()),
    T.StructField("success", T.BooleanType()),
    T.StructField("observed", T.StringType()),
    T.StructField("samples", T.StringType()),
])


def bronze_events_view(events: DataFrame) -> DataFrame:
    """Flat columns the suite checks: nested prices and quantities reduced to their minimum."""
    items = F.coalesce(F.col("productListItems"), F.array())
    return events.select(
        "_id", "timestamp", "eventType", "primary_namespace",
        F.col("commerce.order.priceTotal").alias("order_price_total"),
        F.array_min(F.transform(items, lambda i: i["priceTotal"])).alias("min_item_price"),
        F.array_min(F.transform(items, lambda i: i["quantity"])).alias("min_item_quantity"),
    )


def _record(ctx: RunContext, outcomes: list[ExpectationOutcome]) -> None:
    rows = [(ctx.run_id, ctx.run_date, o.suite, o.expectation, o.severity, o.success, o.observed,
             json.dumps(o.samples, default=str)) for o in outcomes]
    if rows:
        lakehouse.append(ctx.spark.createDataFrame(rows, DQ_SCHEMA), ctx.cfg.table("dq_results"))


def run(ctx: RunContext) -> dict[str, float]:
    cfg = ctx.cfg
    batch = (lakehouse.read(ctx.spark, cfg.table("events"), "ingest")
             .where(F.col("_ingest_run_date") == F.lit(ctx.run_date))
             .transform(bronze_events_view))
    suite = load_suite(cfg.project_path(cfg.get("quality.suite_dir")) / "bronze_events.json")
    earliest = datetime.fromisoformat(str(cfg.get("quality.earliest_event_date")))
    parameters = {
        "earliest_event_time": earliest,
        # Events of the night's export end before the run date starts.
        "latest_event_time": datetime.combine(ctx.run_date, time.min) - timedelta(microseconds=1),
        "event_types": list(cfg.get("quality.event_types")),
        "identity_namespaces": list(cfg.get("identity.namespace_priority")),
    }
    ctx.progress(f"suite {suite.name}: {len(suite.expectations)} expectations")
    outcomes = validate(batch, suite, parameters, int(cfg.get("quality.sample_bad_values")))
    _record(ctx, outcomes)
    errors = [o for o in outcomes if not o.success and o.severity == "critical"]
    warnings = [o for o in outcomes if not o.success and o.severity != "critical"]
    for warning in warnings:
        ctx.progress(f"warning: {warning.describe()}")
    if errors:
        raise GateError(f"data-quality gate: {len(errors)} expectation(s) failed in suite {suite.name}: "
                        + "; ".join(o.describe() for o in errors))
    return {"expectations": len(outcomes), "failed_errors": 0, "failed_warnings": len(warnings)}
