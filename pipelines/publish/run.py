"""The publish step: the run date's scores MERGEd into gold/profile_enrichment, once the
table as the MERGE would leave it has passed the profile_enrichment suite."""

from __future__ import annotations

import pyspark.sql.functions as F

from pipelines import lakehouse
from pipelines.ingest.identity import primary_identity_per_person
from pipelines.models.specs import lifetime_value_enabled, propensity_specs
from pipelines.ops.context import RunContext
from pipelines.publish.profile_table import (KEY, ORDER, aligned, ensure_table, merge_profiles, profile_rows,
                                             profile_schema)
from pipelines.quality.gate import QualityChecks
from pipelines.quality.views import profile_ranges_view, profile_table_after_merge


def run(ctx: RunContext) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    prefixes = {spec.registered_name: spec.prefix for spec in propensity_specs(cfg)}
    scores = (lakehouse.read(spark, cfg.table("scores"), "score")
              .where(F.col("score_date") == F.lit(ctx.run_date)))
    value_prefix = str(cfg.get("models.lifetime_value.profile_prefix")) if lifetime_value_enabled(cfg) else None
    values = (lakehouse.read(spark, cfg.table("lifetime_value"), "score")
              .where(F.col("score_date") == F.lit(ctx.run_date)) if value_prefix else None)
    graph = lakehouse.read(spark, cfg.table("identity_graph"), "ingest")
    path = cfg.table("profile_enrichment")
    table = ensure_table(spark, path, profile_schema(list(prefixes.values()), value_prefix),
                         bool(cfg.get("publish.change_data_feed")))
    primary = primary_identity_per_person(graph, cfg.get("identity.namespace_priority"))
    current = table.toDF()
    rows = aligned(profile_rows(scores, primary, prefixes, values, value_prefix), current.schema)
    checks = QualityChecks(ctx)
    checks.run_suite("profile_enrichment",
                     rows.transform(profile_table_after_merge(current, KEY, ORDER))
                     .transform(profile_ranges_view(list(prefixes.values()))),
                     {"run_date": ctx.run_date})
    checks.enforce()
    merge_profiles(table, rows)
    last = table.history(1).first()
    metrics = {k: int(v) for k, v in (last["operationMetrics"] or {}).items()
               if k in ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted")}
    people = lakehouse.read(spark, path).count()
    ctx.progress(f"profile table: {people} people, version {last['version']}: {metrics}")
    return {"profiles": people, "table_version": int(last["version"]), **metrics, **checks.outputs()}
