"""The features step: gold/features for the run date (replaces that date only)."""

from __future__ import annotations

import pyspark.sql.functions as F

from pipelines import lakehouse
from pipelines.features.build import person_features
from pipelines.ops.context import RunContext


def run(ctx: RunContext) -> dict[str, float]:
    cfg = ctx.cfg
    events = lakehouse.read(ctx.spark, cfg.table("silver_events"), "ingest")
    features = events.transform(person_features(
        ctx.run_date, cfg.get("features.windows_days"), int(cfg.get("features.eligibility_lookback_days"))))
    path = cfg.table("features")
    lakehouse.replace_where(features, path, f"as_of_date = '{ctx.run_date.isoformat()}'",
                            partition_by=["as_of_date"])
    rows = lakehouse.read(ctx.spark, path).where(F.col("as_of_date") == F.lit(ctx.run_date)).count()
    ctx.progress(f"{rows} people with features as of {ctx.run_date}")
    return {"people": rows}
