"""Product and content affinity of the run date: the champion's candidate and parameters
applied to tonight's interactions of every person with a feature row -> gold/product_affinity
and gold/content_affinity (a row per person and rank: the top k SKUs or sections)."""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.core.context import RunContext
from pipelines.models import artifacts
from pipelines.models.affinity import dimension_of, strengths_as_of
from pipelines.models.item_affinity import events_window, exclusions_as_of, groups_as_of, recommend
from pipelines.quality.gate import QualityChecks
from pipelines.scoring.affinity import people_ranked, ranked_rows_view
from pipelines.scoring.champions import affinity_champion
from pipelines.scoring.scores import with_provenance


def score(ctx: RunContext, checks: QualityChecks, features: DataFrame, key: str) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    found = affinity_champion(ctx, checks, key)
    if found is None:
        return {}
    name, champion, parameters = found
    k, item = int(parameters["top_k"]), parameters["item"]
    # Strengths, exclusions and categories read the same window: silver is read once.
    events = events_window(lakehouse.read(spark, cfg.table("silver_events"), "ingest"), parameters,
                           ctx.run_date).persist(StorageLevel.MEMORY_AND_DISK)
    # The champion's own dimension (its section field: the conf may have changed since).
    strengths = strengths_as_of(events, parameters, ctx.run_date,
                                dimension_of(parameters)).persist(StorageLevel.MEMORY_AND_DISK)
    excluded = exclusions_as_of(events, parameters, ctx.run_date)
    if excluded is not None:
        excluded = excluded.persist(StorageLevel.MEMORY_AND_DISK)   # counted, then joined
    active = features.select("person_id")
    groups = groups_as_of(events, parameters, ctx.run_date)
    # A co-occurrence version lends through the neighbours it was trained with (versions
    # logged before they were kept count them from tonight's strengths).
    similarities = artifacts.item_similarities(champion.run_id) if parameters["method"] == "co_occurrence" else None
    rows = (recommend(strengths, parameters, k, item, excluded, groups, similarities).join(active, "person_id")
            .transform(with_provenance(ctx.run_date, name, champion, ctx.clock, ctx.run_id)))
    path = cfg.table(key)
    lakehouse.replace_where(rows, path, f"score_date = '{ctx.run_date.isoformat()}'", partition_by=["score_date"])
    for frame in (strengths, excluded, events):
        if frame is not None:
            frame.unpersist()
    stored = lakehouse.read(spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
    people = people_ranked(stored)
    ctx.progress(f"{people} people's top {k} {item}s with {name} v{champion.version} ({parameters['method']})")
    checks.run_suite(key, stored.transform(ranked_rows_view(active, k, item)))
    return {f"{key}.people_scored": people, f"{key}.model_version": int(champion.version)}

