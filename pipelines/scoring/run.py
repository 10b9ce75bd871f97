"""The score step: each propensity model's champion x the eligible feature rows of the run
date -> gold/scores (a row per person and model, with the person's influential factors;
the date replaced in one transaction),
then the scores suite and drift against each champion's training population; then the
other insights: the lifetime value of every active buyer -> gold/lifetime_value, the top
categories of every active person -> gold/affinity, their segments -> gold/segments."""

from __future__ import annotations

import time
from functools import reduce

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from pipelines import lakehouse
from pipelines.models import registry
from pipelines.models.propensity import positive_probability
from pipelines.models.run import SCORE_COLUMN
from pipelines.models.specs import AFFINITY, LIFETIME_VALUE, SEGMENTS, PropensitySpec, enabled, propensity_specs
from pipelines.ops.context import RunContext
from pipelines.quality.drift import drift_outcomes
from pipelines.quality.gate import QualityChecks
from pipelines.quality.suites import ExpectationOutcome
from pipelines.quality.views import scores_view
from pipelines.errors import BadInputError
from pipelines.scoring import affinity, lifetime_value, segments
from pipelines.scoring.factors import tree_ensemble, with_factors
from pipelines.scoring.scores import percentile_cut_points, with_provenance, with_score_columns


def run(ctx: RunContext) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    registry.connect(cfg)
    specs = propensity_specs(cfg)
    champions = {spec.key: registry.require_champion(spec.registered_name) for spec in specs}
    features = (lakehouse.read(spark, cfg.table("features"), "features")
                .where(F.col("as_of_date") == F.lit(ctx.run_date)))
    scored, counts = [], {}
    for spec in specs:
        champion = champions[spec.key]
        model = registry.load_spark_model(spec.registered_name, champion.version)
        scored.append(_score(ctx, spec, champion, model, features.where(spec.eligible())))
        counts[spec.key] = scored[-1][1].count()
    path = cfg.table("scores")
    lakehouse.replace_where(reduce(DataFrame.unionByName, [rows for rows, _ in scored]), path,
                            f"score_date = '{ctx.run_date.isoformat()}'", partition_by=["score_date"],
                            merge_schema=True)
    for spec in specs:
        ctx.progress(f"{counts[spec.key]} people scored with {spec.registered_name} v{champions[spec.key].version}")

    with QualityChecks(ctx) as checks:
        stored = lakehouse.read(spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
        eligible = reduce(DataFrame.unionByName, [
            features.where(spec.eligible()).select("person_id", F.lit(spec.registered_name).alias("model_name"))
            for spec in specs])
        checks.run_suite("scores", stored.transform(scores_view(eligible)))
        for spec, (_, probabilities) in zip(specs, scored, strict=True):
            _check_drift(ctx, checks, spec, champions[spec.key], features.where(spec.eligible()), probabilities)
            probabilities.unpersist()
        others = {}
        for key, module in ((LIFETIME_VALUE, lifetime_value), (AFFINITY, affinity), (SEGMENTS, segments)):
            if enabled(cfg, key):
                others.update(module.score(ctx, checks, features))
        checks.enforce()
        return {"people_scored": sum(counts.values()), **others,
                **{f"{key}.people_scored": n for key, n in counts.items()},
                **{f"{key}.model_version": int(v.version) for key, v in champions.items()},
                **checks.outputs()}


def _score(ctx: RunContext, spec: PropensitySpec, champion, model,
           eligible: DataFrame) -> tuple[DataFrame, DataFrame]:
    """One model's rows for gold/scores (lazy), and the cached probabilities and factors they
    come from."""
    ensemble = tree_ensemble(model)
    try:
        explain = with_factors(ensemble, ctx.cfg.get("scoring.factors"), keep=["person_id", "as_of_date", SCORE_COLUMN])
    except ValueError as err:
        raise BadInputError(str(err)) from err
    scored = (model.transform(eligible)
              .select("person_id", "as_of_date", positive_probability().alias(SCORE_COLUMN), *ensemble.inputs)
              .transform(explain)
              .cache())
    cuts = percentile_cut_points(scored, SCORE_COLUMN)
    buckets = ctx.cfg.get("scoring.buckets")
    rows = (scored.transform(with_score_columns(cuts, int(buckets["medium_from_percentile"]),
                                                int(buckets["high_from_percentile"])))
            .transform(with_provenance(ctx.run_date, spec.registered_name, champion, ctx.clock, ctx.run_id)))
    return rows, scored


def _check_drift(ctx: RunContext, checks: QualityChecks, spec: PropensitySpec, champion,
                 eligible: DataFrame, probabilities: DataFrame) -> None:
    started = time.monotonic()
    reference = registry.drift_reference(champion.run_id)
    name = spec.registered_name
    if reference is None:
        missing = ExpectationOutcome(
            suite="drift", check=f"{spec.key}.reference_present",
            expectation=f"drift reference of {name} v{champion.version}", severity="warning",
            success=False, samples=[],
            observed="the champion logged no training distribution; drift is measured once a version "
                     "trained by this release is champion")
        checks.add([missing], 0.0)
        return
    inputs = [column for column in reference if column != SCORE_COLUMN]
    population = [eligible.select(*inputs), probabilities.select(SCORE_COLUMN)]
    checks.add(drift_outcomes(reference, population, ctx.cfg.get("quality.drift"), SCORE_COLUMN, spec.key),
               time.monotonic() - started)
