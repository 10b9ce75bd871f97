"""The train step, per propensity model: training set from past snapshots, fit, evaluate
on the holdout, register, promote through the gates.

Idempotent per run date: a version already trained for the run date is reused, so a
rerun of the nightly scores with the same model and writes the same rows. In the
nightly, a model whose champion is younger than `retrain_every_days` is not retrained.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property
from functools import reduce

import mlflow
import mlflow.spark
from mlflow.models import infer_signature
import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines import lakehouse
from pipelines.errors import BadInputError
from pipelines.features.build import feature_columns, person_features
from pipelines.features.run import check_features
from pipelines.models import lifecycle, registry
from pipelines.models.propensity import (baseline_pipeline, classifier_pipeline, cumulative_gains, evaluate,
                                         feature_importances, holdout_auc, parameter_grid, positive_probability,
                                         reliability_curve, roc_points, snapshot_plan, time_based_search)
from pipelines.models import affinity_train, lifetime_value_train, segments_train
from pipelines.models.specs import AFFINITY, LIFETIME_VALUE, SEGMENTS, PropensitySpec, enabled, propensity_specs
from pipelines.ops import plots
from pipelines.ops.context import RunContext
from pipelines.quality import model_gates
from pipelines.quality.drift import reference_profile
from pipelines.quality.gate import QualityChecks
from pipelines.reproducible import in_canonical_order

SCORE_COLUMN = "probability"
# Metrics of each model that the ledger keeps as numbers (`<model>.<metric>`).
LEDGER_METRICS = ("holdout_auc_roc", "holdout_pr_auc", "holdout_brier", "holdout_lift_top_decile",
                  "holdout_baseline_auc_roc", "holdout_positive_rate", "holdout_rows", "training_rows",
                  "model_version", "promoted", "reused")


@dataclass
class PinnedEvents:
    """silver/events at the Delta version the step read, so a training run can be
    reproduced with time travel; persisted because every snapshot and label reads it."""
    frame: DataFrame
    path: str
    version: int

    @classmethod
    def read(cls, ctx: RunContext) -> "PinnedEvents":
        path = ctx.cfg.table("silver_events")
        version = lakehouse.version(ctx.spark, path)
        frame = (ctx.spark.read.format("delta").option("versionAsOf", version).load(path)
                 .persist(StorageLevel.MEMORY_AND_DISK))
        return cls(frame, path, version)

    @cached_property
    def _span(self):
        return self.frame.agg(F.min("event_date").alias("first"), F.max("event_date").alias("last")).first()

    @property
    def first_date(self) -> date | None:
        return self._span["first"]

    @property
    def last_date(self) -> date | None:
        return self._span["last"]


def labelled_snapshot(events: DataFrame, spec: PropensitySpec, as_of: date, windows, lookback: int) -> DataFrame:
    return (events.transform(person_features(as_of, windows, lookback))
            .transform(spec.labels(events, as_of)))


def run(ctx: RunContext) -> dict:
    """Train every model of `models.propensity`, or only `ctx.model` when the user named one."""
    specs = propensity_specs(ctx.cfg, ctx.model)
    experiment_id = registry.connect(ctx.cfg)
    with QualityChecks(ctx) as checks:
        # One pinned read of silver/events for every model of the step; cached on first use,
        # so a night on which no model is due reads nothing.
        events = PinnedEvents.read(ctx)
        per_model = {}
        try:
            for spec in specs:
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
        finally:
            events.frame.unpersist()
        ledger = (LEDGER_METRICS + lifetime_value_train.LEDGER_METRICS + affinity_train.LEDGER_METRICS
                  + segments_train.LEDGER_METRICS)
        numbers = {f"{key}.{name}": out[name] for key, out in per_model.items()
                   for name in ledger if isinstance(out.get(name), (int, float))}
        return {"models": per_model, **numbers, **checks.outputs()}


def _train(ctx: RunContext, checks: QualityChecks, spec: PropensitySpec, events: PinnedEvents,
           experiment_id: str) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    model_cfg = cfg.get(f"models.{spec.key}")
    model_name = spec.registered_name
    earlier = lifecycle.already_trained(ctx, model_name, spec.retrain_every_days)
    if earlier is not None:
        version, why = earlier
        return {**lifecycle.reused(model_name, version, why), "roc": registry.holdout_roc(version.run_id),
                "evaluation": registry.evaluation(version.run_id)}

    try:
        plan = snapshot_plan(ctx.run_date, spec.horizon_days, int(model_cfg["cadence_days"]),
                             int(model_cfg["training_snapshots"]))
    except ValueError as err:
        raise BadInputError(f"models.{spec.key}: {err}") from err
    windows = cfg.get("features.windows_days")
    lookback = int(cfg.get("features.eligibility_lookback_days"))
    snapshots = [labelled_snapshot(events.frame, spec, d, windows, lookback)
                 for d in plan.training + (plan.holdout,)]
    training_set = (reduce(DataFrame.unionByName, snapshots)
                    .withColumn("model", F.lit(spec.key))
                    .withColumn("training_run_date", F.lit(ctx.run_date).cast("date"))
                    .withColumn("split", F.when(F.col("as_of_date") == F.lit(plan.holdout), "holdout")
                                .otherwise("train")))
    set_path = cfg.table("training_set")
    this_set = (F.col("model") == F.lit(spec.key)) & (F.col("training_run_date") == F.lit(ctx.run_date))
    lakehouse.replace_where(training_set, set_path,
                            f"model = '{spec.key}' AND training_run_date = '{ctx.run_date.isoformat()}'",
                            partition_by=["model", "training_run_date"])
    stored = lakehouse.read(spark, set_path).where(this_set).drop("model").cache()
    try:
        check_features(checks, stored)
        bounds = cfg.get(f"quality.training.{spec.key}")
        checks.run_suite("training_set", stored, {"min_label_rate": float(bounds["min_label_rate"]),
                                                  "max_label_rate": float(bounds["max_label_rate"])})
        checks.enforce()
        class_counts: dict[str, dict[float, int]] = {}
        for row in stored.groupBy("split", "label").count().collect():
            class_counts.setdefault(row["split"], {})[row["label"]] = row["count"]
        rules = cfg.get("quality.sufficiency")
        decision = model_gates.sufficiency(
            class_counts, int(rules["min_labels_per_class"]), events.first_date, events.last_date,
            plan.training[0], ctx.run_date, int(rules["min_history_days"]), int(rules["max_staleness_days"]))
        if not decision.allowed:
            return lifecycle.refused(ctx, checks, model_name, decision, f"training refused: {decision.reason}")
        checks.add([lifecycle.gate_outcome(model_name, decision, "error")], 0.0)
        ctx.progress(f"training set: {sum(class_counts.get('train', {}).values())} rows from "
                     f"{len(plan.training)} snapshots, holdout {sum(class_counts.get('holdout', {}).values())} "
                     f"rows as of {plan.holdout}")
        return _fit_and_register(ctx, checks, spec, stored, plan, events, experiment_id)
    finally:
        stored.unpersist()


def _champion_auc(holdout: DataFrame, model_name: str, inputs: list[str]) -> tuple[float | None, str]:
    """The champion's AUC on this holdout, when its inputs are today's feature columns."""
    current = registry.champion(model_name)
    if current is None:
        return None, "no champion yet"
    if registry.run_params(current.run_id).get("features") != ",".join(inputs):
        return None, f"champion v{current.version} used other features; not compared"
    model = registry.load_spark_model(model_name, current.version)
    return evaluate(model.transform(holdout))["holdout_auc_roc"], f"champion v{current.version}"


def _search(ctx: RunContext, spec: PropensitySpec, train: DataFrame, plan,
            inputs: list[str]) -> tuple[dict, list[dict]]:
    """The gbt settings to fit with: conf's, or the best of the search grid, judged on the
    latest training snapshot by models fitted on the earlier ones."""
    model_cfg = ctx.cfg.get(f"models.{spec.key}")
    try:
        candidates = parameter_grid(dict(model_cfg["gbt"]), model_cfg.get("search"))
    except ValueError as err:
        raise BadInputError(f"models.{spec.key}.{err}") from err
    if len(candidates) == 1 or len(plan.training) < 2:
        return candidates[0], []
    latest = F.col("as_of_date") == F.lit(plan.training[-1])
    ctx.progress(f"searching {len(candidates)} settings: fit before {plan.training[-1]}, judge on it")
    best, results = time_based_search(train.where(~latest), train.where(latest), inputs, candidates,
                                      int(model_cfg["seed"]))
    ctx.progress("search: " + "; ".join(
        f"{_differences(r['params'], model_cfg['gbt'])} AUC {r['validation_auc_roc']:.3f}" for r in results))
    return best, results


def _differences(params: dict, base: dict) -> str:
    changed = {k: v for k, v in params.items() if base.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "as configured"


def _log_figures(roc: list, metrics: dict, evaluation: dict) -> None:
    figures = {
        "plots/holdout_roc.png": plots.roc_figure(roc, metrics["holdout_auc_roc"]),
        "plots/holdout_gains.png": plots.lift_figure(evaluation["gains"]),
        "plots/holdout_calibration.png": plots.reliability_figure(evaluation["reliability"], metrics["holdout_brier"]),
        "plots/feature_importances.png": plots.importance_figure(evaluation["importances"]),
    }
    for name, fig in figures.items():
        mlflow.log_figure(fig, name)
        plots.close(fig)


def _fit_and_register(ctx: RunContext, checks: QualityChecks, spec: PropensitySpec, stored: DataFrame, plan,
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
    inputs = feature_columns(windows)
    settings, search = _search(ctx, spec, train, plan, inputs)
    estimator = classifier_pipeline(inputs, settings, int(model_cfg["seed"]))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.key}-{ctx.run_date}") as mlrun:
        mlflow.log_params({
            "model": spec.key, "target": spec.target, "run_date": ctx.run_date.isoformat(),
            "horizon_days": spec.horizon_days, "eligible_purchased_within_days": spec.purchased_within_days,
            "holdout_as_of": plan.holdout.isoformat(),
            "training_as_of": ",".join(d.isoformat() for d in plan.training),
            "silver_events_path": events.path, "silver_events_version": events.version,
            "training_set_path": cfg.table("training_set"),
            "training_set_version": lakehouse.version(spark, cfg.table("training_set")),
            "features": ",".join(inputs), **{f"gbt_{k}": v for k, v in settings.items()},
        })
        if search:
            mlflow.log_dict({"validation_as_of": plan.training[-1].isoformat(), "candidates": search},
                            "hyperparameter_search.json")
        ctx.progress("fitting gradient-boosted trees")
        model = estimator.fit(train)
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

    champion_auc, note = _champion_auc(holdout, model_name, inputs)
    rules = cfg.get("quality.promotion")
    decision = model_gates.promotion(metrics["holdout_auc_roc"], champion_auc, float(rules["min_auc"]),
                                     float(rules["max_auc_drop"]), note)
    metrics_out = {**metrics, "model_version": int(version), "reused": 0, "mlflow_run_id": mlrun.info.run_id,
                   "roc": roc, "evaluation": evaluation}
    return lifecycle.register_decision(ctx, checks, model_name, version, metrics, decision, metrics_out)
