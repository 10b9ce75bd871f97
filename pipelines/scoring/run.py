"""The score step: champion model x features of the run date -> gold/scores (that date replaced)."""

from __future__ import annotations

import pyspark.sql.functions as F

from pipelines import lakehouse
from pipelines.models import registry
from pipelines.models.propensity import positive_probability
from pipelines.models.run import MODEL_KEY
from pipelines.ops.context import RunContext
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
              .select("person_id", "as_of_date", positive_probability().alias("probability"))
              .cache())
    cuts = percentile_cut_points(scored, "probability")
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
    return {"people_scored": count, "model_version": int(champion.version)}
