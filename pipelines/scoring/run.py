"""The score step: each propensity model's champion x the eligible feature rows of the run
date -> gold/scores (a row per person and model, with the person's influential factors;
the date replaced in one transaction),
then the scores suite and drift against each champion's training population; then the
other insights: the lifetime value of every active buyer -> gold/lifetime_value, the top
categories of every active person -> gold/affinity, their segments -> gold/segments, their
top products and content sections -> gold/product_affinity, gold/content_affinity; and
each custom regressor's predictions -> gold/predictions. Custom classifiers score with
the propensities, into gold/scores."""

from __future__ import annotations

import time
from dataclasses import replace
from functools import reduce
from typing import Callable

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.models import custom, registry
from pipelines.models.customer_base import CUSTOMER_BASE_COLUMNS, CustomerBase
from pipelines.models.propensity import SCORE_COLUMN, positive_probability
from pipelines.models.specs import (AFFINITY, ITEM_AFFINITIES, LIFETIME_VALUE, SEGMENTS, ModelSpec, enabled,
                                   model_specs)
from pipelines.core.context import RunContext
from pipelines.quality.drift import drift_outcomes
from pipelines.quality.gate import QualityChecks
from pipelines.quality.suites import ExpectationOutcome
from pipelines.quality.views import scores_view
from pipelines.core.errors import BadInputError, GateError
from pipelines.scoring import affinity, item_affinity, lifetime_value, segments
from pipelines.scoring.champions import champion_or_skip
from pipelines.scoring.factors import FACTORS_TYPE, explainer, with_factors
from pipelines.models.regression import PREDICTION
from pipelines.scoring.scores import (bucket, percentile_cut_points, percentile_from_cut_points, with_provenance,
                                      with_score_columns)


def run(ctx: RunContext) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    registry.connect(cfg)
    every_spec = model_specs(cfg)   # conf's models parsed once: classifiers here, regressors in _predict
    with QualityChecks(ctx) as checks:
        # Each classifier's champion; one without a champion is skipped tonight (see champions.py).
        champions = {spec.key: version for spec in every_spec if not spec.is_regressor
                     and (version := champion_or_skip(checks, spec.key, spec.registered_name, spec.required))}
        fits, base = _customer_base(ctx, checks, every_spec, champions)
        specs = [spec for spec in every_spec if spec.key in champions]
        features = (lakehouse.read(spark, cfg.table("features"), "features")
                    .where(F.col("as_of_date") == F.lit(ctx.run_date)))
        extras = _extra_features(ctx, every_spec)
        inputs = _model_inputs(specs, features, extras)
        for key, with_base in base.items():
            inputs[key] = inputs[key].transform(with_base)
        scored, counts, drifted = [], {}, []
        for spec in list(specs):
            champion = champions[spec.key]
            model = registry.load_spark_model(spec.registered_name, champion.version)
            rows, probabilities = _score(ctx, spec, champion, model, inputs[spec.key])
            verdict = _judge_drift(ctx, checks, spec, champion, inputs[spec.key], probabilities)
            if verdict != KEEP:
                # Beyond the drift threshold: not published tonight; retrained first when it can be.
                probabilities.unpersist()
                specs.remove(spec)
                del champions[spec.key]
                drifted += [spec.key] if verdict == RETRAIN else []
                continue
            scored.append((rows, probabilities))
            counts[spec.key] = probabilities.count()
        if specs:
            path = cfg.table("scores")
            lakehouse.replace_where(reduce(DataFrame.unionByName, [rows for rows, _ in scored]), path,
                                    f"score_date = '{ctx.run_date.isoformat()}'", partition_by=["score_date"],
                                    merge_schema=True)
            for spec in specs:
                ctx.progress(f"{counts[spec.key]} people scored with {spec.registered_name} "
                             f"v{champions[spec.key].version}")
            stored = lakehouse.read(spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
            eligible = reduce(DataFrame.unionByName, [
                features.where(spec.eligible()).select("person_id", F.lit(spec.registered_name).alias("model_name"))
                for spec in specs])
            checks.run_suite("scores", stored.transform(scores_view(eligible)))
        for _, probabilities in scored:
            probabilities.unpersist()
        others = {}
        for key, module in ((LIFETIME_VALUE, lifetime_value), (AFFINITY, affinity), (SEGMENTS, segments)):
            if enabled(cfg, key):
                others.update(module.score(ctx, checks, features))
        for key in ITEM_AFFINITIES:
            if enabled(cfg, key):
                others.update(item_affinity.score(ctx, checks, features, key))
        predicted, drifted_regressors = _predict(ctx, checks, features, extras,
                                                 [spec for spec in every_spec if spec.is_regressor])
        others.update(predicted)
        if extras is not None:
            extras.unpersist()
        if fits is not None:
            fits.release()
        checks.enforce()
        return {"people_scored": sum(counts.values()), **others,
                **({"retrain_for_drift": drifted + drifted_regressors} if drifted + drifted_regressors else {}),
                **{f"{key}.people_scored": n for key, n in counts.items()},
                **{f"{key}.model_version": int(v.version) for key, v in champions.items()},
                **checks.outputs()}


def _model_inputs(specs: list[ModelSpec], features: DataFrame,
                  extras: DataFrame | None) -> dict[str, DataFrame]:
    """Each model's eligible feature rows, with a custom model's own features added from
    `extras` (see `_extra_features`)."""
    rows = {}
    for spec in specs:
        eligible = features.where(spec.eligible())
        if spec.definition is not None:
            eligible = eligible.transform(spec.definition.joined_with(extras))
        rows[spec.key] = eligible
    return rows


def _customer_base(ctx: RunContext, checks: QualityChecks, specs: list[ModelSpec], champions: dict
                   ) -> tuple[CustomerBase | None, dict[str, Callable[[DataFrame], DataFrame]]]:
    """The customer-base fit of the run date (to release after scoring), and for each
    champion trained with those features the transform that adds them as of the run date
    (fitted on the purchases before it). When they cannot be fitted tonight those models
    are skipped with the reason (a required one stops the night); `champions` loses them."""
    using = [spec for spec in specs if spec.key in champions
             and set(CUSTOMER_BASE_COLUMNS) <= set(registry.run_params(champions[spec.key].run_id)
                                                   .get("features", "").split(","))]
    if not using:
        return None, {}
    events = lakehouse.read(ctx.spark, ctx.cfg.table("silver_events"), "ingest")
    base = CustomerBase(events, int(ctx.cfg.get("models.lifetime_value.spend_decimals")))
    why = base.unavailable([ctx.run_date])
    if not why:
        return base, {spec.key: base.features(ctx.run_date, spec.horizon_days) for spec in using}
    for spec in using:
        what = f"{spec.registered_name} needs the customer-base features, and there are none {why}"
        if spec.required:
            raise GateError(f"model {spec.key}: {what}, and models.{spec.key}.required is true")
        checks.add([ExpectationOutcome(
            suite="model_gates", check=f"{spec.key}.customer_base_present", expectation=what, severity="warning",
            success=False, samples=[], observed="skipped tonight; its profile columns keep what they hold")], 0.0)
        ctx.progress(f"{spec.key}: {what}; skipped tonight")
        del champions[spec.key]
    return base, {}


def _extra_features(ctx: RunContext, specs: list[ModelSpec]) -> DataFrame | None:
    """The extra features of every custom model in `specs` as of the run date, in one cached
    pass over silver/events (read only when some model declares any)."""
    definitions = [spec.definition for spec in specs
                   if spec.definition is not None and spec.definition.extra_features]
    if not definitions:
        return None
    events = lakehouse.read(ctx.spark, ctx.cfg.table("silver_events"), "ingest")
    return custom.extra_feature_values(definitions, events, ctx.run_date,
                                       int(ctx.cfg.get("features.eligibility_lookback_days"))).cache()


def _score(ctx: RunContext, spec: ModelSpec, champion, model,
           eligible: DataFrame) -> tuple[DataFrame, DataFrame]:
    """One model's rows for gold/scores (lazy), and the cached probabilities and factors they
    come from (with the model's inputs, when it gives factors). Factors need gradient-boosted
    trees straight on the model's inputs or the standardised logistic regression; other
    models' rows have an empty list."""
    keep = ["person_id", "as_of_date", SCORE_COLUMN]
    ensemble = explainer(model)
    probabilities = model.transform(eligible).select(*keep[:2], positive_probability().alias(SCORE_COLUMN),
                                                     *(ensemble.inputs if ensemble else ()))
    if ensemble is None:
        # An empty list, not null: the model gives no factors, none were lost.
        scored = probabilities.withColumn("factors", F.array().cast(FACTORS_TYPE)).cache()
    else:
        # The inputs stay in the cached rows for the drift checks, which would otherwise
        # build the eligible rows (features and customer base) a second time.
        inputs = [column for column in ensemble.inputs if column not in keep]
        try:
            explain = with_factors(ensemble, ctx.cfg.get("scoring.factors"), keep=keep + inputs)
        except ValueError as err:
            raise BadInputError(str(err)) from err
        scored = probabilities.transform(explain).cache()
    cuts = percentile_cut_points(scored, SCORE_COLUMN)
    buckets = ctx.cfg.get("scoring.buckets")
    rows = (scored.select(*keep, "factors")
            .transform(with_score_columns(cuts, int(buckets["medium_from_percentile"]),
                                          int(buckets["high_from_percentile"])))
            .transform(with_provenance(ctx.run_date, spec.registered_name, champion, ctx.clock, ctx.run_id)))
    return rows, scored


def _predict(ctx: RunContext, checks: QualityChecks, features: DataFrame, extras: DataFrame | None,
             specs: list[ModelSpec]) -> tuple[dict, list[str]]:
    """Custom regressors (`specs`): each champion's prediction for its eligible people, with
    the percentile and bucket among them -> gold/predictions (the date replaced in one
    transaction); then the `predictions` suite. The outputs, and the models to retrain for
    drift."""
    champions = {spec.key: version for spec in specs
                 if (version := champion_or_skip(checks, spec.key, spec.registered_name, spec.required))}
    specs = [spec for spec in specs if spec.key in champions]
    inputs = _model_inputs(specs, features, extras)
    buckets = ctx.cfg.get("scoring.buckets")
    rows, predicted, drifted = [], {}, []
    for spec in list(specs):
        model = registry.load_spark_model(spec.registered_name, champions[spec.key].version)
        predicted[spec.key] = (model.transform(inputs[spec.key])
                               .select("person_id", F.col(PREDICTION).cast("double").alias(PREDICTION)).cache())
        verdict = _judge_drift(ctx, checks, spec, champions[spec.key], inputs[spec.key], predicted[spec.key],
                               PREDICTION)
        if verdict != KEEP:
            predicted.pop(spec.key).unpersist()
            specs.remove(spec)
            drifted += [spec.key] if verdict == RETRAIN else []
            continue
        cuts = percentile_cut_points(predicted[spec.key], PREDICTION)
        percentile = percentile_from_cut_points(F.col(PREDICTION), cuts)
        rows.append(predicted[spec.key]
                    .withColumn("percentile", percentile)
                    .withColumn("bucket", bucket(percentile, int(buckets["medium_from_percentile"]),
                                                 int(buckets["high_from_percentile"])))
                    .transform(with_provenance(ctx.run_date, spec.registered_name, champions[spec.key], ctx.clock,
                                               ctx.run_id)))
    if not specs:
        return {}, drifted
    path = ctx.cfg.table("predictions")
    lakehouse.replace_where(reduce(DataFrame.unionByName, rows), path, f"score_date = '{ctx.run_date.isoformat()}'",
                            partition_by=["score_date"], merge_schema=True)
    stored = lakehouse.read(ctx.spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
    eligible = reduce(DataFrame.unionByName, [
        inputs[spec.key].select("person_id", F.lit(spec.registered_name).alias("model_name")) for spec in specs])
    checks.run_suite("predictions", stored.transform(scores_view(eligible)))
    out = {}
    for spec in specs:
        out[f"{spec.key}.people_scored"] = predicted[spec.key].count()
        out[f"{spec.key}.model_version"] = int(champions[spec.key].version)
        ctx.progress(f"{out[f'{spec.key}.people_scored']} people predicted with {spec.registered_name} "
                     f"v{champions[spec.key].version}")
        predicted[spec.key].unpersist()
    return out, drifted


KEEP, RETRAIN, SKIP = "keep", "retrain", "skip"


def _judge_drift(ctx: RunContext, checks: QualityChecks, spec: ModelSpec, champion, eligible: DataFrame,
                 probabilities: DataFrame, score_column: str = SCORE_COLUMN) -> str:
    """Record drift against the champion's training population and say what becomes of the
    model tonight: KEEP it; RETRAIN it first (its score is beyond the error threshold and
    its champion was trained before tonight, in a nightly that can retrain it); or SKIP it
    (still beyond after that, or nothing tonight can retrain it). A required model is kept,
    and the error-level outcome stops the night instead."""
    started = time.monotonic()
    reference = registry.drift_reference(champion.run_id)
    name = spec.registered_name
    if reference is None:
        checks.add([ExpectationOutcome(
            suite="drift", check=f"{spec.key}.reference_present",
            expectation=f"drift reference of {name} v{champion.version}", severity="warning",
            success=False, samples=[],
            observed="the champion logged no training distribution; drift is measured once a version "
                     "trained by this release is champion")], 0.0)
        return KEEP
    inputs = [column for column in reference if column != score_column]
    # Each column from the first frame holding it: the cached scores (with the model's
    # inputs when it gives factors), then the eligible rows for the rest.
    population = [probabilities, eligible.select(*inputs)]
    outcomes = drift_outcomes(reference, population, ctx.cfg.get("quality.drift"), score_column, spec.key)
    beyond = any(o.blocks and o.check.endswith(f"psi_{score_column}") for o in outcomes)
    if not beyond or spec.required:
        checks.add(outcomes, time.monotonic() - started)
        return KEEP
    trained_tonight = champion.tags.get(registry.RUN_DATE_TAG) == ctx.run_date.isoformat()
    verdict = RETRAIN if ctx.scheduled and not trained_tonight and spec.key not in ctx.retrained_for_drift else SKIP
    note = ("retrained tonight, then scored again" if verdict == RETRAIN else
            "skipped tonight: its champion was trained on the latest snapshots and still drifts" if trained_tonight
            or spec.key in ctx.retrained_for_drift else
            f"skipped tonight: retrain it (`enrich train --model {spec.key}`) and score again")
    checks.add([replace(o, severity="warning", observed=f"{o.observed}; {note}") if o.blocks else o
                for o in outcomes], time.monotonic() - started)
    ctx.progress(f"{spec.key}: score drifted beyond quality.drift.score.error; {note}")
    return verdict
