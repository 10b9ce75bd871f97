"""Lifetime value of the run date: the champion's counting model and Gamma-Gamma parameters applied
to every active buyer's purchase summary (in the executors), the value from the regressor
when that way won the champion's holdout -> gold/lifetime_value."""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.models import registry
from pipelines.models.lifetime_value import purchase_summary, with_lifetime_value
from pipelines.models.artifacts import REGRESSOR, lifetime_value_model
from pipelines.models.specs import LIFETIME_VALUE as KEY
from pipelines.models.specs import required
from pipelines.scoring.champions import champion_or_skip
from pipelines.models.value_regressor import non_negative_value
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.quality.views import scores_view
from pipelines.scoring.scores import percentile_cut_points, percentile_from_cut_points, with_provenance


def score(ctx: RunContext, checks: QualityChecks, features: DataFrame) -> dict:
    """Value every buyer with a feature row tonight (a purchase before the run date and an
    event in the look-back); write the date's rows in one transaction, then check them."""
    cfg, spark = ctx.cfg, ctx.spark
    name = str(cfg.get(f"models.{KEY}.registered_name"))
    champion = champion_or_skip(checks, KEY, name, required(cfg, KEY))
    if champion is None:
        return {}
    value = lifetime_value_model(champion.run_id)
    active = features.select("person_id")
    summary = (lakehouse.read(spark, cfg.table("silver_events"), "ingest")
               .transform(purchase_summary(ctx.run_date)).join(active, "person_id"))
    valued = summary.transform(with_lifetime_value(value.counts, value.spend, float(value.horizon_days)))
    if value.method == REGRESSOR:
        # The regressor won on the holdout: it gives the value; the counting model P(alive) and purchases.
        regressor = registry.load_spark_model(name, champion.version)
        predicted = (regressor.transform(features.join(summary.select("person_id"), "person_id"))
                     .select("person_id", non_negative_value().alias("_regressor_value")))
        valued = (valued.join(predicted, "person_id").withColumn("expected_value", F.col("_regressor_value"))
                  .drop("_regressor_value"))
    valued = valued.cache()
    cuts = percentile_cut_points(valued, "expected_value")
    rows = (valued.withColumn("value_percentile", percentile_from_cut_points(F.col("expected_value"), cuts))
            .withColumn("horizon_days", F.lit(value.horizon_days))
            .transform(with_provenance(ctx.run_date, name, champion, ctx.clock, ctx.run_id)))
    path = cfg.table("lifetime_value")
    lakehouse.replace_where(rows, path, f"score_date = '{ctx.run_date.isoformat()}'", partition_by=["score_date"])
    people = valued.count()
    valued.unpersist()
    ctx.progress(f"{people} buyers valued with {name} v{champion.version} over {value.horizon_days} days")
    stored = lakehouse.read(spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
    eligible = active.withColumn("model_name", F.lit(name))
    checks.run_suite("lifetime_value", stored.transform(scores_view(eligible)))
    return {f"{KEY}.people_valued": people, f"{KEY}.model_version": int(champion.version)}
