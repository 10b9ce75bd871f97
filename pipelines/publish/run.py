"""The publish step: the run date's scores MERGEd into gold/profile_enrichment, once the
table as the MERGE would leave it has passed the profile_enrichment suite."""

from __future__ import annotations

from datetime import timedelta

import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.core.errors import BadInputError
from pipelines.identity.graph import primary_identity_per_person
from pipelines.models.specs import AFFINITY, LIFETIME_VALUE, SEGMENTS, enabled, propensity_specs, regression_specs
from pipelines.core.context import RunContext
from pipelines.publish.profile_table import (KEY, ORDER, affinity_attributes, aligned, attribute_fields, ensure_table,
                                             merge_profiles, prediction_attributes, profile_rows, profile_schema,
                                             segment_attributes, value_attributes)
from pipelines.scoring.engagement import engagement_score
from pipelines.quality.gate import QualityChecks
from pipelines.quality.views import profile_ranges_view, profile_table_after_merge


def run(ctx: RunContext) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    prefixes = {spec.registered_name: spec.prefix for spec in propensity_specs(cfg)}
    scores = (lakehouse.read(spark, cfg.table("scores"), "score")
              .where(F.col("score_date") == F.lit(ctx.run_date)))
    attributes = _other_insights(ctx)
    graph = lakehouse.read(spark, cfg.table("identity_graph"), "ingest")
    path = cfg.table("profile_enrichment")
    table = ensure_table(spark, path, profile_schema(list(prefixes.values()), attribute_fields(attributes)),
                         bool(cfg.get("publish.change_data_feed")))
    primary = primary_identity_per_person(graph, cfg.get("identity.namespace_priority"))
    current = table.toDF()
    # Read twice, by the suite's view and by the MERGE: joined from a dozen tables once.
    rows = aligned(profile_rows(scores, primary, prefixes, attributes), current.schema).persist(
        StorageLevel.MEMORY_AND_DISK)
    with QualityChecks(ctx) as checks:
        checks.run_suite("profile_enrichment",
                         rows.transform(profile_table_after_merge(current, KEY, ORDER))
                         .transform(profile_ranges_view(list(prefixes.values()),
                                                        ["engagement_score"] if cfg.get("engagement.enabled") else [])),
                         {"run_date": ctx.run_date})
        checks.enforce()
    expiry = cfg.get("publish.expire_after_days")
    if expiry is not None and (not isinstance(expiry, int) or expiry < 1):
        raise BadInputError(f"publish.expire_after_days must be a whole number >= 1 or null, got {expiry!r}")
    merge_profiles(table, rows, ctx.run_date - timedelta(days=expiry) if expiry else None, ctx.run_date)
    rows.unpersist()
    version, recorded = lakehouse.last_commit(spark, path)
    metrics = {k: v for k, v in recorded.items()
               if k in ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted",
                        "numTargetRowsNotMatchedBySourceUpdated")}
    people = lakehouse.read(spark, path).count()
    ctx.progress(f"profile table: {people} people, version {version}: {metrics}")
    return {"profiles": people, "table_version": version, **metrics, **checks.outputs()}


def _other_insights(ctx: RunContext) -> list[DataFrame]:
    """The run date's lifetime values, top categories, segments and engagement, as profile
    columns keyed by person_id."""
    cfg, spark = ctx.cfg, ctx.spark
    attributes = []
    currency = str(cfg.get("models.lifetime_value.currency"))
    builders = ((LIFETIME_VALUE, "lifetime_value", lambda rows, prefix: value_attributes(rows, prefix, currency)),
                (AFFINITY, "affinity", affinity_attributes),
                (SEGMENTS, "segments", segment_attributes))
    for key, table, build in builders:
        if enabled(cfg, key):
            rows = (lakehouse.read(spark, cfg.table(table), "score")
                    .where(F.col("score_date") == F.lit(ctx.run_date)))
            attributes.append(build(rows, str(cfg.get(f"models.{key}.profile_prefix"))))
    regressors = {spec.registered_name: spec.prefix for spec in regression_specs(cfg)}
    # No table yet: no regressor has had a champion to predict with; its columns come later.
    if regressors and lakehouse.exists(spark, cfg.table("predictions")):
        rows = (lakehouse.read(spark, cfg.table("predictions"), "score")
                .where(F.col("score_date") == F.lit(ctx.run_date)))
        attributes.append(prediction_attributes(rows, regressors))
    if cfg.get("engagement.enabled"):
        features = (lakehouse.read(spark, cfg.table("features"), "features")
                    .where(F.col("as_of_date") == F.lit(ctx.run_date)))
        try:
            attributes.append(features.transform(engagement_score(cfg.get("engagement"),
                                                                  cfg.get("features.windows_days"))))
        except ValueError as err:
            raise BadInputError(str(err)) from err
    return attributes
