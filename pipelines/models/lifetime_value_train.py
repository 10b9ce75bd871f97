"""Training the lifetime-value model: BG/NBD and Gamma-Gamma fitted on the buyers' summaries
as of the holdout date, judged on what those buyers spent in the horizon after it.

    holdout = run_date - horizon: fit on purchases before it, compare predictions over
    [holdout, run_date) with the revenue that happened there.

The version is registered in MLflow as a pyfunc model (it predicts from x, t_x, T and the
mean spend, with or without Spark) and gets the alias `champion` through its own gate:
the holdout total within `max_total_error` of the actual, and a per-person MAE no worse
than the champion's on the same holdout.
"""

from __future__ import annotations

from datetime import date, timedelta

import mlflow
import mlflow.pyfunc
import pandas as pd
import pyspark.sql.functions as F
from mlflow.models import infer_signature
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines.models import lifecycle, registry
from pipelines.models.lifetime_value import (BgNbd, GammaGamma, actual_value, collect_weighted, compress_for_bgnbd,
                                             compress_for_gamma_gamma, expected_purchases, expected_spend,
                                             fit_bgnbd, fit_gamma_gamma, holdout_errors, parameters_dict,
                                             parameters_from_dict, probability_alive, purchase_summary,
                                             with_lifetime_value)
from pipelines.ops.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.quality.model_gates import Decision, value_promotion, value_sufficiency

KEY = "lifetime_value"
PARAMETERS_ARTIFACT = "lifetime_value_parameters.json"
LEDGER_METRICS = ("holdout_mae", "holdout_rmse", "holdout_total_predicted", "holdout_total_actual",
                  "holdout_total_ratio", "holdout_people", "model_version", "promoted", "reused")


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
    rules = cfg.get(f"models.{KEY}.promotion")
    decimals = int(cfg.get(f"models.{KEY}.spend_decimals"))
    ctx.progress(f"fitting BG/NBD and Gamma-Gamma on purchases before {holdout}")
    bgnbd_data = collect_weighted(compress_for_bgnbd(summary), ["x", "t_x", "T"])
    spend_data = collect_weighted(compress_for_gamma_gamma(summary, decimals), ["x", "mean_spend"])
    try:
        bgnbd, spend = fit_bgnbd(bgnbd_data), fit_gamma_gamma(spend_data)
    except ValueError as err:
        failed = Decision(allowed=False, check="data_sufficiency", rule="the likelihood fit converges",
                          observed=str(err), reason=str(err))
        return lifecycle.refused(ctx, checks, name, failed, f"training refused: {err}")
    actual = events.frame.transform(actual_value(holdout, horizon))
    metrics = holdout_errors(summary.transform(with_lifetime_value(bgnbd, spend, float(horizon))), actual)
    parameters = parameters_dict(bgnbd, spend)
    ctx.progress(f"{len(bgnbd_data['x'])} distinct (x, t_x, T) of {int(metrics['holdout_people'])} buyers; "
                 f"holdout MAE {metrics['holdout_mae']:.2f}, predicted {metrics['holdout_total_predicted']:,.0f} "
                 f"vs actual {metrics['holdout_total_actual']:,.0f} over {horizon} days")
    champion_mae, note = _champion_mae(name, summary, actual, horizon)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{KEY}-{ctx.run_date}") as mlrun:
        mlflow.log_params({"model": KEY, "run_date": ctx.run_date.isoformat(), "horizon_days": horizon,
                           "holdout_as_of": holdout.isoformat(), "silver_events_path": events.path,
                           "silver_events_version": events.version, "spend_decimals": decimals,
                           "distinct_bgnbd_tuples": len(bgnbd_data["x"]),
                           "distinct_spend_tuples": len(spend_data["x"]),
                           **{f"bgnbd_{k}": v for k, v in parameters["bgnbd"].items()},
                           **{f"gamma_gamma_{k}": v for k, v in parameters["gamma_gamma"].items()}})
        mlflow.log_metrics(metrics)
        mlflow.log_dict({**parameters, "horizon_days": horizon}, PARAMETERS_ARTIFACT)
        example = pd.DataFrame({"x": [0.0, 2.0], "t_x": [0.0, 30.0], "T": [40.0, 90.0], "mean_spend": [None, 55.0]})
        model = LifetimeValueModel(parameters, horizon)
        info = mlflow.pyfunc.log_model(name="model", python_model=model, registered_model_name=name,
                                       input_example=example,
                                       signature=infer_signature(example, model.predict(None, example)),
                                       pip_requirements=["scipy", "numpy", "pandas"])
        version = str(info.registered_model_version)
    decision = value_promotion(metrics["holdout_mae"], metrics["holdout_total_ratio"], champion_mae,
                               float(rules["max_total_error"]), float(rules["max_mae_increase"]), note)
    outputs = {**metrics, "model_version": int(version), "reused": 0, "mlflow_run_id": mlrun.info.run_id,
               "parameters": parameters}
    return lifecycle.register_decision(ctx, checks, name, version, metrics, decision, outputs)


def _champion_mae(name: str, summary: DataFrame, actual: DataFrame, horizon: int) -> tuple[float | None, str]:
    """The champion's MAE on this holdout, with its own parameters."""
    current = registry.champion(name)
    if current is None:
        return None, "no champion yet"
    bgnbd, spend = fitted_parameters(current.run_id)
    errors = holdout_errors(summary.transform(with_lifetime_value(bgnbd, spend, float(horizon))), actual)
    return errors["holdout_mae"], f"champion v{current.version}"
