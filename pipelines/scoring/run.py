"""The score step: champion model x features of the run date -> gold/scores (that date replaced),
then the scores suite and drift against the champion's training population."""

from __future__ import annotations

import time

import pyspark.sql.functions as F

from pipelines import lakehouse
from pipelines.models import registry
from pipelines.models.propensity import positive_probability
from pipelines.models.run import MODEL_KEY, SCORE_COLUMN
from pipelines.ops.context import RunContext
from pipelines.quality.drift import drift_outcomes
from pipelines.quality.gate import QualityChecks
from pipelines.quality.suites import ExpectationOutcome
from pipelines.quality.views import scores_view
from pipelines.scoring.scores import percentile_cut_points, with_score_columns


def run(ctx: RunContext) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    model_name = cfg.get(f"models.{MODEL_KEY}.registered_name")
    registry.connect(cfg)
    champion = registry.require_champion(model_name)
    model = registry.load_spark_model(model_name, champion.version)
    features = (lakehouse.read(spark, cfg.table("features"), "features")
                .where(F.col("as_of_date") == F.lit(ctx.run_date)))
    scored = (model.transform(features)
              .select("person_id", "as_of_date", positive_probability().alias(SCORE_COLUMN))
              .cache())
    cuts = percentile_cut_points(scored, SCORE_COLUMN)
    buckets = cfg.get("scoring.buckets")
    rows = (scored.transform(with_score_columns(cuts, int(buckets["medium_from_percentile"]),
                                                int(buckets["high_from_percentile"])))
            .withColumn("score_date", F.lit(ctx.run_date).cast("date"))
            .withColumn("model_name", F.lit(model_name))
            .withColumn("model_version", F.lit(int(champion.version)))
            .withColumn("mlflow_run_id", F.lit(champion.run_id))
            .withColumn("scored_at", F.lit(ctx.clock).cast("timestamp"))
            .withColumn("run_id", F.lit(ctx.run_id)))
    path = cfg.table("scores")
    lakehouse.replace_where(rows, path, f"score_date = '{ctx.run_date.isoformat()}'", partition_by=["score_date"])
    count = scored.count()
    scored.unpersist()
    ctx.progress(f"{count} people scored with {model_name} v{champion.version}")

    checks = QualityChecks(ctx)
    stored = lakehouse.read(spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
    checks.run_suite("scores", stored.transform(scores_view(features)))
    started = time.monotonic()
    reference = registry.drift_reference(champion.run_id)
    if reference is None:
        missing = ExpectationOutcome(
            suite="drift", check="reference_present",
            expectation=f"drift reference of {model_name} v{champion.version}", severity="warning",
            success=False, samples=[],
            observed="the champion logged no training distribution; drift is measured once a version "
                     "trained by this release is champion")
        checks.add([missing], 0.0)
    else:
        inputs = [column for column in reference if column != SCORE_COLUMN]
        population = model.transform(features).select(*inputs, positive_probability().alias(SCORE_COLUMN))
        checks.add(drift_outcomes(reference, population, cfg.get("quality.drift"), SCORE_COLUMN),
                   time.monotonic() - started)
    checks.enforce()
    return {"people_scored": count, "model_version": int(champion.version), **checks.outputs()}
