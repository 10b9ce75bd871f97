"""Training the lifetime-value model, two ways, judged on the same buyers:

    BG/NBD and Gamma-Gamma fitted on the buyers' summaries as of the holdout date;
    gradient-boosted trees on the person features (pipelines/models/value_regressor.py);
    holdout = run_date - horizon: predictions over [holdout, run_date) vs. the revenue
    that happened there, for the buyers with a feature row at the holdout.

The way with the lower MAE is registered: the fitted parameters as a pyfunc model (it
predicts from x, t_x, T and the mean spend, with or without Spark), or the regressor's
Spark ML pipeline. P(alive) and expected purchases come from BG/NBD either way. The
version gets the alias `champion` through its own gate:
the holdout total within `max_total_error` of the actual, and a per-person MAE no worse
than the champion's on the same holdout.
"""

from __future__ import annotations

from datetime import date, timedelta

import mlflow
import mlflow.pyfunc
import mlflow.spark
import pandas as pd
import pyspark.sql.functions as F
from mlflow.models import infer_signature
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines.features.build import feature_columns
from pipelines.models import lifecycle, registry
from pipelines.models.lifetime_value import (BgNbd, GammaGamma, collect_weighted, compress_for_bgnbd,
                                             compress_for_gamma_gamma, expected_purchases, expected_spend,
                                             fit_bgnbd, fit_gamma_gamma, holdout_errors, parameters_dict,
                                             parameters_from_dict, probability_alive, purchase_summary,
                                             with_lifetime_value)
from pipelines.models.value_regressor import labelled_buyers, non_negative_value, regressor_pipeline
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.quality.model_gates import Decision, value_promotion, value_sufficiency
from pipelines.core.reproducible import in_canonical_order

KEY = "lifetime_value"
PARAMETERS_ARTIFACT = "lifetime_value_parameters.json"
# The two ways to value a buyer; the one with the lower holdout MAE is registered.
PROBABILISTIC = "bgnbd_gamma_gamma"
REGRESSOR = "gbt_regressor"
LEDGER_METRICS = ("holdout_mae", "holdout_rmse", "holdout_total_predicted", "holdout_total_actual",
                  "holdout_total_ratio", "holdout_people",
                  *(f"holdout_{way}_{metric}" for way in (PROBABILISTIC, REGRESSOR)
                    for metric in ("mae", "total_ratio")),
                  "value_method_is_regressor", "model_version", "promoted", "reused")


class LifetimeValueModel(mlflow.pyfunc.PythonModel):
    """The fitted parameters as an MLflow model: x, t_x, T (days), mean_spend ->
    p_alive, expected_purchases and expected_value over the horizon."""

    def __init__(self, parameters: dict, horizon_days: int):
        self.parameters = parameters
        self.horizon_days = horizon_days

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        bgnbd, spend = parameters_from_dict(self.parameters)
        x, t_x, T = (model_input[c].to_numpy(dtype=float) for c in ("x", "t_x", "T"))
        purchases = expected_purchases(bgnbd, float(self.horizon_days), x, t_x, T)
        per_purchase = expected_spend(spend, x, model_input["mean_spend"].to_numpy(dtype=float, na_value=float("nan")))
        return pd.DataFrame({"p_alive": probability_alive(bgnbd, x, t_x, T), "expected_purchases": purchases,
                             "expected_value": purchases * per_purchase})


def horizon_days(ctx: RunContext) -> int:
    return int(ctx.cfg.get(f"models.{KEY}.horizon_days"))


def fitted_parameters(run_id: str) -> tuple[BgNbd, GammaGamma]:
    return parameters_from_dict(registry.load_dict(run_id, PARAMETERS_ARTIFACT))


def train(ctx: RunContext, checks: QualityChecks, events, experiment_id: str) -> dict:
    """Fit, judge and register tonight's lifetime-value model (or reuse one; see lifecycle).
    `events` is the step's pinned read of silver/events (models.run.PinnedEvents)."""
    cfg = ctx.cfg
    model_cfg = cfg.get(f"models.{KEY}")
    name = str(model_cfg["registered_name"])
    earlier = lifecycle.already_trained(ctx, name, int(model_cfg["retrain_every_days"]))
    if earlier is not None:
        return {**lifecycle.reused(name, *earlier), "parameters": registry.load_dict(earlier[0].run_id,
                                                                                     PARAMETERS_ARTIFACT)}
    horizon = horizon_days(ctx)
    holdout = ctx.run_date - timedelta(days=horizon)
    summary = events.frame.transform(purchase_summary(holdout)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = summary.agg(F.count(F.lit(1)).alias("buyers"),
                             F.sum(F.when(F.col("x") > 0, 1).otherwise(0)).alias("repeat")).first()
        decision = value_sufficiency(int(counts["buyers"]), int(counts["repeat"] or 0),
                                     int(cfg.get("quality.sufficiency.min_labels_per_class")))
        if not decision.allowed:
            return lifecycle.refused(ctx, checks, name, decision, f"training refused: {decision.reason}")
        checks.add([lifecycle.gate_outcome(name, decision, "error")], 0.0)
        return _fit_and_register(ctx, checks, name, summary, events, holdout, horizon, experiment_id)
    finally:
        summary.unpersist()


def _fit_and_register(ctx: RunContext, checks: QualityChecks, name: str, summary: DataFrame, events,
                      holdout: date, horizon: int, experiment_id: str) -> dict:
    cfg = ctx.cfg
    model_cfg = cfg.get(f"models.{KEY}")
    rules = model_cfg["promotion"]
    decimals = int(model_cfg["spend_decimals"])
    ctx.progress(f"fitting BG/NBD and Gamma-Gamma on purchases before {holdout}")
    bgnbd_data = collect_weighted(compress_for_bgnbd(summary), ["x", "t_x", "T"])
    spend_data = collect_weighted(compress_for_gamma_gamma(summary, decimals), ["x", "mean_spend"])
    try:
        bgnbd, spend = fit_bgnbd(bgnbd_data), fit_gamma_gamma(spend_data)
    except ValueError as err:
        failed = Decision(allowed=False, check="data_sufficiency", rule="the likelihood fit converges",
                          observed=str(err), reason=str(err))
        return lifecycle.refused(ctx, checks, name, failed, f"training refused: {err}")
    inputs = feature_columns(events.windows)
    # Both ways are judged on the buyers the nightly would value: a feature row at the holdout.
    judged = labelled_buyers(events.frame, events.features(holdout), holdout, horizon).persist(
        StorageLevel.MEMORY_AND_DISK)
    try:
        actual = judged.select("person_id", "actual_value", "actual_purchases")
        probabilistic = (summary.join(judged.select("person_id"), "person_id")
                         .transform(with_lifetime_value(bgnbd, spend, float(horizon))).cache())
        by_method = {PROBABILISTIC: holdout_errors(probabilistic, actual)}
        earlier = holdout - timedelta(days=horizon)
        ctx.progress(f"fitting the gradient-boosted regressor on buyers as of {earlier}")
        training_rows = in_canonical_order(
            labelled_buyers(events.frame, events.features(earlier), earlier, horizon), "person_id")
        regressor = regressor_pipeline(inputs, model_cfg["regressor"], int(model_cfg["seed"])).fit(training_rows)
        by_method[REGRESSOR] = holdout_errors(_regressor_values(regressor, judged, probabilistic), actual)
        champion_mae, note = _champion_mae(name, summary, judged, actual, horizon)
        sample = judged.select(*inputs).limit(5).toPandas()
        probabilistic.unpersist()
    finally:
        judged.unpersist()
    method = min(by_method, key=lambda m: by_method[m]["holdout_mae"])
    metrics = {**by_method[method], **{f"holdout_{m}_{k}": by_method[m][f"holdout_{k}"]
                                      for m in by_method for k in ("mae", "rmse", "total_ratio")},
               "value_method_is_regressor": float(method == REGRESSOR)}
    parameters = parameters_dict(bgnbd, spend)
    ctx.progress(f"{len(bgnbd_data['x'])} distinct (x, t_x, T); {int(metrics['holdout_people'])} buyers "
                 f"judged: holdout MAE {by_method[PROBABILISTIC]['holdout_mae']:.2f} with BG/NBD + "
                 f"Gamma-Gamma, {by_method[REGRESSOR]['holdout_mae']:.2f} with the regressor: {method} is used; "
                 f"predicted {metrics['holdout_total_predicted']:,.0f} vs actual "
                 f"{metrics['holdout_total_actual']:,.0f} over {horizon} days")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{KEY}-{ctx.run_date}") as mlrun:
        mlflow.log_params({"model": KEY, "run_date": ctx.run_date.isoformat(), "horizon_days": horizon,
                           "holdout_as_of": holdout.isoformat(), "silver_events_path": events.path,
                           "silver_events_version": events.version, "spend_decimals": decimals,
                           "distinct_bgnbd_tuples": len(bgnbd_data["x"]),
                           "distinct_spend_tuples": len(spend_data["x"]), "value_method": method,
                           "features": ",".join(inputs),
                           **{f"regressor_{k}": v for k, v in dict(model_cfg["regressor"]).items()},
                           **{f"bgnbd_{k}": v for k, v in parameters["bgnbd"].items()},
                           **{f"gamma_gamma_{k}": v for k, v in parameters["gamma_gamma"].items()}})
        mlflow.log_metrics(metrics)
        mlflow.log_dict({**parameters, "horizon_days": horizon, "value_method": method}, PARAMETERS_ARTIFACT)
        info = _log_model(name, method, parameters, horizon, regressor, sample, ctx.spark.version)
        version = str(info.registered_model_version)
    decision = value_promotion(metrics["holdout_mae"], metrics["holdout_total_ratio"], champion_mae,
                               float(rules["max_total_error"]), float(rules["max_mae_increase"]), note)
    outputs = {**metrics, "model_version": int(version), "reused": 0, "mlflow_run_id": mlrun.info.run_id,
               "parameters": parameters, "value_method": method}
    return lifecycle.register_decision(ctx, checks, name, version, metrics, decision, outputs)


def _log_model(name: str, method: str, parameters: dict, horizon: int, regressor, sample: pd.DataFrame,
               spark_version: str):
    """Register the better way: the regressor's Spark ML pipeline, or the fitted parameters
    as a pyfunc model (the parameters artifact is logged either way: P(alive) and the
    expected purchases always come from BG/NBD)."""
    if method == REGRESSOR:
        return mlflow.spark.log_model(regressor, "model", registered_model_name=name,
                                      signature=registry.signature(sample, [0.0] * len(sample)),
                                      pip_requirements=[f"pyspark=={spark_version}"])
    example = pd.DataFrame({"x": [0.0, 2.0], "t_x": [0.0, 30.0], "T": [40.0, 90.0], "mean_spend": [None, 55.0]})
    model = LifetimeValueModel(parameters, horizon)
    return mlflow.pyfunc.log_model(name="model", python_model=model, registered_model_name=name,
                                   input_example=example,
                                   signature=infer_signature(example, model.predict(None, example)),
                                   pip_requirements=["scipy", "numpy", "pandas"])


def _regressor_values(regressor, rows: DataFrame, probabilistic: DataFrame) -> DataFrame:
    """The regressor's expected value beside BG/NBD's expected purchases and P(alive)."""
    return (regressor.transform(rows).select("person_id", non_negative_value().alias("expected_value"))
            .join(probabilistic.select("person_id", "expected_purchases", "p_alive"), "person_id"))


def value_method(run_id: str) -> str:
    """How a version values people (versions before the regressor existed: probabilistic)."""
    return registry.load_dict(run_id, PARAMETERS_ARTIFACT).get("value_method", PROBABILISTIC)


def _champion_mae(name: str, summary: DataFrame, judged: DataFrame, actual: DataFrame,
                  horizon: int) -> tuple[float | None, str]:
    """The champion's MAE on this holdout's buyers, its own way."""
    current = registry.champion(name)
    if current is None:
        return None, "no champion yet"
    bgnbd, spend = fitted_parameters(current.run_id)
    probabilistic = (summary.join(judged.select("person_id"), "person_id")
                     .transform(with_lifetime_value(bgnbd, spend, float(horizon))))
    if value_method(current.run_id) == REGRESSOR:
        probabilistic = _regressor_values(registry.load_spark_model(name, current.version), judged, probabilistic)
    return holdout_errors(probabilistic, actual)["holdout_mae"], f"champion v{current.version}"
