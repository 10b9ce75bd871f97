"""The train step, per propensity model: training set from past snapshots, fit, evaluate
on the holdout, register, promote through the gates.

Idempotent per run date: a version already trained for the run date is reused, so a
rerun of the nightly scores with the same model and writes the same rows. In the
nightly, a model whose champion is younger than `retrain_every_days` is not retrained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Callable
from functools import cached_property
from functools import reduce

import mlflow
import mlflow.spark
from mlflow.models import infer_signature
import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.core.errors import BadInputError
from pipelines.features.build import person_features
from pipelines.features.run import check_features
from pipelines.models import custom, lifecycle, registry
from pipelines.models.propensity import (baseline_pipeline, classifier_pipeline, cumulative_gains, evaluate,
                                         feature_importances, holdout_auc, positive_probability,
                                         reliability_curve, roc_points, snapshot_plan, time_based_search)
from pipelines.models import affinity_train, lifetime_value_train, regression_train, segments_train
from pipelines.models.specs import AFFINITY, LIFETIME_VALUE, SEGMENTS, ModelSpec, enabled, model_specs
from pipelines.core import plots
from pipelines.core.context import RunContext
from pipelines.quality import model_gates
from pipelines.quality.drift import reference_profile
from pipelines.quality.gate import QualityChecks
from pipelines.core.reproducible import in_canonical_order

SCORE_COLUMN = "probability"
# Metrics of each model that the ledger keeps as numbers (`<model>.<metric>`).
LEDGER_METRICS = ("holdout_auc_roc", "holdout_pr_auc", "holdout_brier", "holdout_lift_top_decile",
                  "holdout_baseline_auc_roc", "holdout_positive_rate", "holdout_rows", "training_rows",
                  "model_version", "promoted", "reused")


@dataclass
class PinnedEvents:
    """silver/events at the Delta version the step read, so a training run can be
    reproduced with time travel; persisted because every snapshot and label reads it.

    Person features are computed once per as-of date for the whole step: models with the
    same horizon train on the same dates (at the e2e scale, 6 distinct dates instead of 17
    snapshots), and the `features` suite checks each date once."""
    frame: DataFrame
    path: str
    version: int
    windows: tuple[int, ...]
    lookback_days: int
    _features: dict[date, DataFrame] = field(default_factory=dict)
    _checked: set[date] = field(default_factory=set)

    @classmethod
    def read(cls, ctx: RunContext) -> "PinnedEvents":
        path = ctx.cfg.table("silver_events")
        version = lakehouse.version(ctx.spark, path)
        frame = (ctx.spark.read.format("delta").option("versionAsOf", version).load(path)
                 .persist(StorageLevel.MEMORY_AND_DISK))
        return cls(frame, path, version, tuple(ctx.cfg.get("features.windows_days")),
                   int(ctx.cfg.get("features.eligibility_lookback_days")))

    def features(self, as_of: date) -> DataFrame:
        """Feature rows as of `as_of`, from events strictly before it."""
        if as_of not in self._features:
            self._features[as_of] = (self.frame.transform(person_features(as_of, self.windows, self.lookback_days))
                                     .persist(StorageLevel.MEMORY_AND_DISK))
        return self._features[as_of]

    def check_features(self, checks: QualityChecks, dates) -> None:
        """The `features` suite on the feature rows of the `dates` not checked yet this step."""
        unchecked = [d for d in dict.fromkeys(dates) if d not in self._checked]
        if unchecked:
            # Checked on a local checkpoint: GX's twenty-odd queries over a union of cached
            # frames took twice as long as over the same rows checkpointed (12.6 s against 5.4 s).
            # The snapshots stay cached, filled by the checkpoint's pass, for the training sets.
            # The checkpoint's blocks go when Spark's cleaner finds the frame unreferenced
            # (DataFrame.unpersist does not reach them).
            rows = reduce(DataFrame.unionByName, [self.features(d) for d in unchecked]).localCheckpoint()
            check_features(checks, rows)
            self._checked.update(unchecked)

    def release(self) -> None:
        for frame in self._features.values():
            frame.unpersist()
        self.frame.unpersist()

    @cached_property
    def _span(self):
        return self.frame.agg(F.min("event_date").alias("first"), F.max("event_date").alias("last")).first()

    @property
    def first_date(self) -> date | None:
        return self._span["first"]

    @property
    def last_date(self) -> date | None:
        return self._span["last"]


def labelled_snapshot(events: PinnedEvents, spec: ModelSpec, as_of: date) -> DataFrame:
    return (events.features(as_of)
            .transform(spec.with_extra_features(events.frame, as_of, events.lookback_days))
            .transform(spec.labels(events.frame, as_of)))


def check_custom_definitions(ctx: RunContext, specs: list[ModelSpec], events: DataFrame) -> None:
    """Spark's verdict on custom models' expressions, estimators and entry points, before
    anything trains (only the schema of `events` is read): exit code 2 on the first problem."""
    windows = ctx.cfg.get("features.windows_days")
    for spec in specs:
        if spec.definition is not None:
            model_cfg = ctx.cfg.get(f"models.{spec.key}")
            problems = custom.analyse(spec.definition, events, windows, model_cfg.get("params") or {},
                                      int(model_cfg["seed"]))
            if problems:
                raise BadInputError("; ".join(problems))


def fitter(spec: ModelSpec, seed: int) -> Callable[[DataFrame, list[str], dict], PipelineModel]:
    """(training rows, inputs, settings) -> fitted model: gradient-boosted trees for the
    built-ins, the declared estimator or entry point for custom models."""
    if spec.definition is not None:
        return spec.definition.fitter(seed)
    return lambda rows, inputs, settings: classifier_pipeline(inputs, settings, seed).fit(rows)


def run(ctx: RunContext) -> dict:
    """Train every model (built-in, then custom), or only `ctx.model` when the user named one."""
    specs = model_specs(ctx.cfg, ctx.model)
    built_in = [s for s in specs if not s.is_custom]
    custom_models = [s for s in specs if s.is_custom]
    experiment_id = registry.connect(ctx.cfg)
    with QualityChecks(ctx) as checks:
        # One pinned read of silver/events for every model of the step; cached on first use,
        # so a night on which no model is due reads nothing.
        events = PinnedEvents.read(ctx)
        check_custom_definitions(ctx, specs, events.frame)
        per_model = {}
        try:
            for spec in built_in:
                ctx.progress(f"model {spec.key}: {spec.target} within {spec.horizon_days} days")
                per_model[spec.key] = _train(ctx, checks, spec, events, experiment_id)
            if enabled(ctx.cfg, LIFETIME_VALUE) and ctx.model in (None, LIFETIME_VALUE):
                ctx.progress(f"model {LIFETIME_VALUE}: purchases and spend within "
                             f"{lifetime_value_train.horizon_days(ctx)} days")
                per_model[LIFETIME_VALUE] = lifetime_value_train.train(ctx, checks, events, experiment_id)
            if enabled(ctx.cfg, AFFINITY) and ctx.model in (None, AFFINITY):
                ctx.progress(f"model {AFFINITY}: the categories each person leans to")
                per_model[AFFINITY] = affinity_train.train(ctx, checks, events, experiment_id)
            if enabled(ctx.cfg, SEGMENTS) and ctx.model in (None, SEGMENTS):
                ctx.progress(f"model {SEGMENTS}: k-means on value and behaviour")
                per_model[SEGMENTS] = segments_train.train(ctx, checks, experiment_id)
            for spec in custom_models:
                ctx.progress(f"model {spec.key}: custom {spec.definition.kind}, {spec.definition.label} "
                             f"within {spec.horizon_days} days")
                per_model[spec.key] = _train(ctx, checks, spec, events, experiment_id)
        finally:
            events.release()
        ledger = (LEDGER_METRICS + lifetime_value_train.LEDGER_METRICS + affinity_train.LEDGER_METRICS
                  + segments_train.LEDGER_METRICS + regression_train.LEDGER_METRICS)
        numbers = {f"{key}.{name}": out[name] for key, out in per_model.items()
                   for name in ledger if isinstance(out.get(name), (int, float))}
        return {"models": per_model, **numbers, **checks.outputs()}


def _train(ctx: RunContext, checks: QualityChecks, spec: ModelSpec, events: PinnedEvents,
           experiment_id: str) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    model_cfg = cfg.get(f"models.{spec.key}")
    model_name = spec.registered_name
    earlier = lifecycle.already_trained(ctx, model_name, spec.retrain_every_days)
    if earlier is not None:
        version, why = earlier
        if spec.is_regressor:
            return lifecycle.reused(model_name, version, why)
        return {**lifecycle.reused(model_name, version, why), "roc": registry.holdout_roc(version.run_id),
                "evaluation": registry.evaluation(version.run_id)}

    try:
        plan = snapshot_plan(ctx.run_date, spec.horizon_days, int(model_cfg["cadence_days"]),
                             int(model_cfg["training_snapshots"]))
    except ValueError as err:
        raise BadInputError(f"models.{spec.key}: {err}") from err
    dates = plan.training + (plan.holdout,)
    events.check_features(checks, dates)
    snapshots = [labelled_snapshot(events, spec, d) for d in dates]
    training_set = (reduce(DataFrame.unionByName, snapshots)
                    .withColumn("model", F.lit(spec.key))
                    .withColumn("training_run_date", F.lit(ctx.run_date).cast("date"))
                    .withColumn("split", F.when(F.col("as_of_date") == F.lit(plan.holdout), "holdout")
                                .otherwise("train")))
    set_path = cfg.table("training_sets")
    this_set = (F.col("model") == F.lit(spec.key)) & (F.col("training_run_date") == F.lit(ctx.run_date))
    lakehouse.replace_where(training_set, set_path,
                            f"model = '{spec.key}' AND training_run_date = '{ctx.run_date.isoformat()}'",
                            partition_by=["model", "training_run_date"], merge_schema=spec.is_custom)
    stored = lakehouse.read(spark, set_path).where(this_set).drop("model").cache()
    try:
        bounds = cfg.get(f"quality.training.{spec.key}", None) or cfg.get("quality.training.default")
        # A regressor's "class" is whether the target is positive (spent, came back): the label
        # rate bounds and the labels-per-class gate apply to that.
        classes = stored.withColumn("label", (F.col("label") > 0).cast("double")) if spec.is_regressor else stored
        checks.run_suite("training_set", classes, {"min_label_rate": float(bounds["min_label_rate"]),
                                                   "max_label_rate": float(bounds["max_label_rate"])})
        checks.enforce()
        class_counts: dict[str, dict[float, int]] = {}
        for row in classes.groupBy("split", "label").count().collect():
            class_counts.setdefault(row["split"], {})[row["label"]] = row["count"]
        rules = cfg.get("quality.sufficiency")
        decision = model_gates.sufficiency(
            class_counts, int(rules["min_labels_per_class"]), events.first_date, events.last_date,
            plan.training[0], ctx.run_date, int(rules["min_history_days"]), int(rules["max_staleness_days"]))
        if not decision.allowed:
            return lifecycle.refused(ctx, checks, model_name, decision, f"training refused: {decision.reason}",
                                     optional=spec.is_custom)
        checks.add([lifecycle.gate_outcome(model_name, decision, "error")], 0.0)
        ctx.progress(f"training set: {sum(class_counts.get('train', {}).values())} rows from "
                     f"{len(plan.training)} snapshots, holdout {sum(class_counts.get('holdout', {}).values())} "
                     f"rows as of {plan.holdout}")
        if spec.is_regressor:
            return regression_train.fit_and_register(
                ctx, checks, spec, stored, plan, experiment_id,
                lambda inputs, settings: _run_params(ctx, spec, plan, events, inputs, settings))
        return _fit_and_register(ctx, checks, spec, stored, plan, events, experiment_id)
    finally:
        stored.unpersist()


def _search(ctx: RunContext, spec: ModelSpec, train: DataFrame, plan,
            inputs: list[str]) -> tuple[dict, list[dict]]:
    """The gbt settings to fit with: conf's, or the best of the search grid, judged on the
    latest training snapshot by models fitted on the earlier ones."""
    model_cfg = ctx.cfg.get(f"models.{spec.key}")
    base = dict(model_cfg.get(spec.settings_key) or {})
    candidates = lifecycle.search_candidates(ctx, spec.key, base, plan)
    if len(candidates) == 1:
        return candidates[0], []
    latest = F.col("as_of_date") == F.lit(plan.training[-1])
    fit = fitter(spec, int(model_cfg["seed"]))
    best, results = time_based_search(train.where(~latest), train.where(latest), candidates,
                                      lambda rows, settings: fit(rows, inputs, settings))
    ctx.progress("search: " + "; ".join(
        f"{_differences(r['params'], base)} AUC {r['validation_auc_roc']:.3f}" for r in results))
    return best, results


def _run_params(ctx: RunContext, spec: ModelSpec, plan, events: PinnedEvents, inputs: list[str],
                settings: dict) -> dict:
    """What a training run logs as MLflow parameters: what it predicts, the dates, the Delta
    versions it read (for time travel), its inputs and settings."""
    return {
        "model": spec.key, "target": spec.target, "run_date": ctx.run_date.isoformat(),
        "horizon_days": spec.horizon_days, "eligible_purchased_within_days": spec.purchased_within_days,
        "holdout_as_of": plan.holdout.isoformat(),
        "training_as_of": ",".join(d.isoformat() for d in plan.training),
        "silver_events_path": events.path, "silver_events_version": events.version,
        "training_set_path": ctx.cfg.table("training_sets"),
        "training_set_version": lakehouse.version(ctx.spark, ctx.cfg.table("training_sets")),
        "features": ",".join(inputs), **{f"{_settings_prefix(spec)}_{k}": v for k, v in settings.items()},
        **_definition_params(spec),
    }


def _settings_prefix(spec: ModelSpec) -> str:
    definition = spec.definition
    return "gbt" if definition is None else (definition.estimator or "params")


def _what_fits(spec: ModelSpec) -> str:
    definition = spec.definition
    if definition is None:
        return "gradient-boosted trees"
    return definition.entry_point or definition.estimator.replace("_", " ")


def _definition_params(spec: ModelSpec) -> dict:
    """A custom model's definition, logged so a run says what it learned to predict."""
    definition = spec.definition
    if definition is None:
        return {}
    return {"label": definition.label, "eligible": definition.eligible or "everyone with a feature row",
            "estimator": definition.estimator or "", "entry_point": definition.entry_point or "",
            **{f"extra_feature_{name}": sql for name, sql in definition.extra_features}}


def _differences(params: dict, base: dict) -> str:
    changed = {k: v for k, v in params.items() if base.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "as configured"


def _log_figures(roc: list, metrics: dict, evaluation: dict) -> None:
    figures = {
        "plots/holdout_roc.png": plots.roc_figure(roc, metrics["holdout_auc_roc"]),
        "plots/holdout_gains.png": plots.lift_figure(evaluation["gains"]),
        "plots/holdout_calibration.png": plots.reliability_figure(evaluation["reliability"], metrics["holdout_brier"]),
    }
    if evaluation["importances"]:   # models without tree importances have none to plot
        figures["plots/feature_importances.png"] = plots.importance_figure(evaluation["importances"])
    for name, fig in figures.items():
        mlflow.log_figure(fig, name)
        plots.close(fig)


def _fit_and_register(ctx: RunContext, checks: QualityChecks, spec: ModelSpec, stored: DataFrame, plan,
                      events: PinnedEvents, experiment_id: str) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    model_cfg = cfg.get(f"models.{spec.key}")
    model_name = spec.registered_name
    windows = cfg.get("features.windows_days")
    # Kept: the search, the fit, the count and the baseline each read it, and each would
    # otherwise shuffle it into canonical order again.
    train = in_canonical_order(stored.where("split = 'train'"), "person_id", "as_of_date").persist(
        StorageLevel.MEMORY_AND_DISK)
    holdout = stored.where("split = 'holdout'")
    inputs = spec.inputs(windows)
    settings, search = _search(ctx, spec, train, plan, inputs)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.key}-{ctx.run_date}") as mlrun:
        mlflow.log_params(_run_params(ctx, spec, plan, events, inputs, settings))
        if search:
            mlflow.log_dict({"validation_as_of": plan.training[-1].isoformat(), "candidates": search},
                            "hyperparameter_search.json")
        ctx.progress(f"fitting {_what_fits(spec)}")
        model = fitter(spec, int(model_cfg["seed"]))(train, inputs, settings)
        holdout_scored = model.transform(holdout).cache()
        metrics = evaluate(holdout_scored)
        roc = roc_points(holdout_scored)
        evaluation = {"gains": cumulative_gains(holdout_scored), "reliability": reliability_curve(holdout_scored),
                      "importances": feature_importances(model, inputs)}
        # The reference for drift: the latest snapshot (the holdout), the population the model
        # was validated on. Older snapshots saw shorter histories, so they differ by construction.
        drift_reference = reference_profile(holdout_scored.select(*inputs, positive_probability().alias(SCORE_COLUMN)),
                                            inputs + [SCORE_COLUMN], int(cfg.get("quality.drift.bins")))
        holdout_scored.unpersist()
        metrics["holdout_lift_top_decile"] = evaluation["gains"][0]["lift"]
        metrics["training_rows"] = float(train.count())
        ctx.progress("fitting the logistic-regression baseline")
        metrics["holdout_baseline_auc_roc"] = holdout_auc(baseline_pipeline(inputs).fit(train), holdout)
        train.unpersist()
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"roc": roc}, registry.ROC_ARTIFACT)
        mlflow.log_dict(evaluation, registry.EVALUATION_ARTIFACT)
        mlflow.log_dict(drift_reference, registry.DRIFT_ARTIFACT)
        _log_figures(roc, metrics, evaluation)
        ctx.progress(f"holdout AUC-ROC {metrics['holdout_auc_roc']:.3f}, PR-AUC {metrics['holdout_pr_auc']:.3f}, "
                     f"lift in the top decile {metrics['holdout_lift_top_decile']:.2f}, "
                     f"Brier {metrics['holdout_brier']:.4f} (baseline AUC "
                     f"{metrics['holdout_baseline_auc_roc']:.3f})")
        # A few rows give MLflow the input and output schema; the model itself stays in Spark.
        sample = holdout.select(*inputs).limit(5).toPandas()
        signature = infer_signature(sample, [0.5] * len(sample))
        info = mlflow.spark.log_model(model, "model", registered_model_name=model_name, signature=signature,
                                      pip_requirements=[f"pyspark=={spark.version}"])
        version = str(info.registered_model_version)

    champion_auc, note = lifecycle.champion_on_holdout(holdout, model_name, inputs,
                                                       lambda scored: evaluate(scored)["holdout_auc_roc"])
    # A model may set its own promotion rules (models.<key>.promotion); conf's are the default.
    rules = {**cfg.get("quality.promotion"), **(model_cfg.get("promotion") or {})}
    decision = model_gates.promotion(metrics["holdout_auc_roc"], champion_auc, float(rules["min_auc"]),
                                     float(rules["max_auc_drop"]), note)
    metrics_out = {**metrics, "model_version": int(version), "reused": 0, "mlflow_run_id": mlrun.info.run_id,
                   "roc": roc, "evaluation": evaluation}
    return lifecycle.register_decision(ctx, checks, model_name, version, metrics, decision, metrics_out,
                                       optional=spec.is_custom)
