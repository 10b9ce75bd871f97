"""Category affinity of the run date: the champion's parameters applied to tonight's
interactions of every person with a feature row -> gold/affinity (a row per person and
rank, the top k categories)."""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.models.affinity import strengths_as_of, top_affinities
from pipelines.models.specs import AFFINITY as KEY
from pipelines.scoring.champions import affinity_champion
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.scoring.scores import with_provenance


def score(ctx: RunContext, checks: QualityChecks, features: DataFrame) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    found = affinity_champion(ctx, checks, KEY)
    if found is None:
        return {}
    name, champion, parameters = found
    k = int(parameters["top_k"])
    # Popularity comes from everyone's interactions; only people active tonight are ranked.
    # Read three times by the ranking (popularity, totals, candidates): one pass over the events.
    strengths = strengths_as_of(lakehouse.read(spark, cfg.table("silver_events"), "ingest"), parameters,
                                ctx.run_date).persist(StorageLevel.MEMORY_AND_DISK)
    active = features.select("person_id")
    rows = (top_affinities(strengths, float(parameters["prior_strength"]), k).join(active, "person_id")
            .transform(with_provenance(ctx.run_date, name, champion, ctx.clock, ctx.run_id)))
    path = cfg.table("affinity")
    lakehouse.replace_where(rows, path, f"score_date = '{ctx.run_date.isoformat()}'", partition_by=["score_date"])
    strengths.unpersist()
    stored = lakehouse.read(spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
    people = people_ranked(stored)
    ctx.progress(f"{people} people's top {k} categories with {name} v{champion.version}")
    checks.run_suite("affinity", stored.transform(ranked_rows_view(active, k, "category")))
    return {f"{KEY}.people_scored": people, f"{KEY}.model_version": int(champion.version)}


def people_ranked(rows: DataFrame) -> int:
    """The people in ranked rows of a date: one first rank each (the suites check that a
    person's ranks are unique), counted from the rank column alone, without a shuffle."""
    return rows.where(F.col("rank") == 1).count()


def ranked_rows_view(active: DataFrame, k: int, item: str):
    """Ranked rows of a date (category, product or content affinity) -> plus `person_rank`
    (unique), `person_<item>` (unique), `inactive_person` (null unless the person had no
    feature row) and `rank_out_of_range`."""
    def _apply(rows: DataFrame) -> DataFrame:
        marks = active.withColumn("_active", F.lit(True))
        return (rows.join(marks, "person_id", "left")
                .withColumn("person_rank", F.concat_ws(" ", "person_id", F.col("rank").cast("string")))
                .withColumn(f"person_{item}", F.concat_ws(" ", "person_id", item))
                .withColumn("inactive_person", F.when(F.col("_active").isNull(), F.col("person_id")))
                .withColumn("rank_out_of_range", F.when(~F.col("rank").between(1, k), F.col("rank")))
                .drop("_active"))
    return _apply
