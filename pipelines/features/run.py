"""The features step: gold/features for the run date (replaces that date only), then checked."""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.core.errors import BadInputError
from pipelines.features.build import feature_columns, person_features, windowed_feature_columns
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.quality.views import features_view


def check_features(checks: QualityChecks, features: DataFrame) -> None:
    """The `features` suite on feature rows (of one date, or every snapshot of a training set)."""
    cfg = checks.ctx.cfg
    windows = cfg.get("features.windows_days")
    lookback = int(cfg.get("features.eligibility_lookback_days"))
    view = features.transform(features_view(feature_columns(windows), windowed_feature_columns(windows)))
    checks.run_suite("features", view, {"lookback_days": lookback, "no_purchase_days": lookback + 1})


def run(ctx: RunContext) -> dict[str, float]:
    cfg = ctx.cfg
    if not lakehouse.exists(ctx.spark, cfg.table("silver_events")):
        raise BadInputError(f"no ExperienceEvents have landed yet ({cfg.table('silver_events')} does not exist): "
                            "insights are learnt from events; profiles alone give none")
    events = lakehouse.read(ctx.spark, cfg.table("silver_events"))
    features = events.transform(person_features(
        ctx.run_date, cfg.get("features.windows_days"), int(cfg.get("features.eligibility_lookback_days"))))
    path = cfg.table("features")
    lakehouse.replace_where(features, path, f"as_of_date = '{ctx.run_date.isoformat()}'",
                            partition_by=["as_of_date"])
    stored = lakehouse.read(ctx.spark, path).where(F.col("as_of_date") == F.lit(ctx.run_date))
    rows = stored.count()
    ctx.progress(f"{rows} people with features as of {ctx.run_date}")
    with QualityChecks(ctx) as checks:
        check_features(checks, stored)
        checks.enforce()
        return {"people": rows, **checks.outputs()}
