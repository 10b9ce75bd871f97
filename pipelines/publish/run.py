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
from pipelines.models.specs import (AFFINITY, CONTENT_AFFINITY, LIFETIME_VALUE, PRODUCT_AFFINITY, SEGMENTS, enabled,
                                   propensity_specs, regression_specs)
from pipelines.core.context import RunContext
from pipelines.publish.profile_table import (KEY, ORDER, RunStamp, affinity_attributes, aligned, attribute_fields,
                                             ensure_table, insight_columns, kept_from_the_table, merge_profiles,
                                             prediction_attributes, profile_rows, profile_schema,
                                             ranked_item_attributes, segment_attributes, value_attributes)
from pipelines.scoring.factors import FACTORS_TYPE
from pipelines.scoring.engagement import engagement_score
from pipelines.quality.gate import QualityChecks
from pipelines.quality.views import profile_ranges_view, profile_table_after_merge


def run(ctx: RunContext) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    prefixes = {spec.registered_name: spec.prefix for spec in propensity_specs(cfg)}
    scores = _tonight(ctx, "scores", SCORE_ROWS)
    attributes, skipped = _other_insights(ctx)
    scored = {row["model_name"] for row in scores.select("model_name").distinct().collect()}   # one per model
    skipped += [(prefix, "propensity") for name, prefix in prefixes.items() if name not in scored]
    graph = lakehouse.read(spark, cfg.table("identity_graph"), "ingest")
    path = cfg.table("profile_enrichment")
    table = ensure_table(spark, path, profile_schema(list(prefixes.values()), attribute_fields(attributes)),
                         bool(cfg.get("publish.change_data_feed")))
    primary = primary_identity_per_person(graph, cfg.get("identity.namespace_priority"))
    current = table.toDF()
    stamp = RunStamp(ctx.run_date, ctx.clock, ctx.run_id)
    # An insight skipped tonight keeps what the table holds for it; the others are tonight's.
    kept = [column for prefix, kind in skipped for column in insight_columns(kind, prefix)
            if column in current.columns]
    if skipped:
        ctx.progress("kept from earlier nights (skipped tonight): " + ", ".join(sorted(p for p, _ in skipped)))
    # Read twice, by the suite's view and by the MERGE: joined from a dozen tables once.
    rows = (aligned(profile_rows(scores, primary, prefixes, attributes, stamp), current.schema)
            .transform(lambda frame: kept_from_the_table(frame, current, kept))
            .persist(StorageLevel.MEMORY_AND_DISK))
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
    return {"profiles": people, "table_version": version, "kept_from_earlier": sorted(p for p, _ in skipped),
            **metrics,
            **checks.outputs()}


# What publish reads of gold/scores (the table may not exist: no classifier had a champion yet).
SCORE_ROWS = ("person_id string, model_name string, probability double, score int, percentile int, "
              "bucket string, factors " + FACTORS_TYPE.simpleString() + ", model_version int")


def _tonight(ctx: RunContext, table: str, empty_schema: str) -> DataFrame:
    """The run date's rows of a gold table; none (in `empty_schema`) when it does not exist."""
    path = ctx.cfg.table(table)
    if not lakehouse.exists(ctx.spark, path):
        return ctx.spark.createDataFrame([], empty_schema)
    return lakehouse.read(ctx.spark, path).where(F.col("score_date") == F.lit(ctx.run_date))


def _other_insights(ctx: RunContext) -> tuple[list[DataFrame], list[tuple[str, str]]]:
    """The run date's lifetime values, top categories, products and sections, segments,
    custom predictions and engagement, as profile columns keyed by person_id; and (prefix, kind) of those with no
    rows tonight (skipped: no champion, or refused), whose columns keep their last values."""
    cfg = ctx.cfg
    attributes, skipped = [], []
    currency = str(cfg.get("models.lifetime_value.currency"))
    builders = ((LIFETIME_VALUE, "lifetime_value", lambda rows, prefix: value_attributes(rows, prefix, currency)),
                (AFFINITY, "affinity", affinity_attributes),
                (PRODUCT_AFFINITY, "product_affinity", ranked_item_attributes("sku")),
                (CONTENT_AFFINITY, "content_affinity", ranked_item_attributes("section")),
                (SEGMENTS, "segments", segment_attributes))
    for key, table, build in builders:
        if enabled(cfg, key):
            prefix = str(cfg.get(f"models.{key}.profile_prefix"))
            path = cfg.table(table)
            if not lakehouse.exists(ctx.spark, path):
                skipped.append((prefix, table))
                continue
            rows = lakehouse.read(ctx.spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
            if rows.isEmpty():
                skipped.append((prefix, table))
            attributes.append(build(rows, prefix))
    regressors = {spec.registered_name: spec.prefix for spec in regression_specs(cfg)}
    # No table yet: no regressor has had a champion to predict with; its columns come later.
    if regressors and lakehouse.exists(ctx.spark, cfg.table("predictions")):
        rows = (lakehouse.read(ctx.spark, cfg.table("predictions"))
                .where(F.col("score_date") == F.lit(ctx.run_date)))
        predicted = {row["model_name"] for row in rows.select("model_name").distinct().collect()}
        skipped += [(prefix, "prediction") for name, prefix in regressors.items() if name not in predicted]
        attributes.append(prediction_attributes(rows, regressors))
    if cfg.get("engagement.enabled"):
        features = (lakehouse.read(ctx.spark, cfg.table("features"), "features")
                    .where(F.col("as_of_date") == F.lit(ctx.run_date)))
        try:
            attributes.append(features.transform(engagement_score(cfg.get("engagement"),
                                                                  cfg.get("features.windows_days"))))
        except ValueError as err:
            raise BadInputError(str(err)) from err
    return attributes, skipped
