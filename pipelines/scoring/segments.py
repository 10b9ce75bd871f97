"""Segments of the run date: every person with a feature row assigned by the champion
k-means pipeline -> gold/segments (a row per person, the segment id and name)."""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.models import registry
from pipelines.models.segments import assign
from pipelines.models.artifacts import segment_table
from pipelines.models.specs import SEGMENTS as KEY
from pipelines.models.specs import required
from pipelines.scoring.champions import champion_or_skip
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.scoring.scores import with_provenance
from pipelines.quality.views import scores_view


def score(ctx: RunContext, checks: QualityChecks, features: DataFrame) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    name = str(cfg.get(f"models.{KEY}.registered_name"))
    champion = champion_or_skip(checks, KEY, name, required(cfg, KEY))
    if champion is None:
        return {}
    model = registry.load_spark_model(name, champion.version)
    segments = segment_table(champion.run_id)
    rows = (features.transform(assign(model, segments))
            .transform(with_provenance(ctx.run_date, name, champion, ctx.clock, ctx.run_id)))
    path = cfg.table("segments")
    lakehouse.replace_where(rows, path, f"score_date = '{ctx.run_date.isoformat()}'", partition_by=["score_date"])
    stored = lakehouse.read(spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
    sizes = {r["segment_name"]: r["count"] for r in stored.groupBy("segment_name").count().collect()}
    ctx.progress(f"{sum(sizes.values())} people in {len(sizes)} segments with {name} v{champion.version}: "
                 + ", ".join(f"{n} {s}" for s, n in sorted(sizes.items(), key=lambda kv: -kv[1])))
    eligible = features.select("person_id", F.lit(name).alias("model_name"))
    checks.run_suite("segments", stored.transform(scores_view(eligible)),
                     {"segment_ids": [s["segment_id"] for s in segments]})
    return {f"{KEY}.people_scored": sum(sizes.values()), f"{KEY}.model_version": int(champion.version)}
