"""Custom regressors after their training set: fit, evaluate on the holdout, register,
promote through the regression gate. The training set, its suites and the sufficiency
gate are the classifiers' (pipelines/models/run.py), with "a positive target" as the class.

Holdout numbers: MAE, RMSE, R^2 against the holdout mean, and the total predicted over
the total actual (a model that is right on average but wrong per person shows there);
predicted against actual per decile of prediction, as a plot.
"""

from __future__ import annotations

from typing import Callable

import mlflow
import mlflow.spark
import pyspark.sql.functions as F
from mlflow.models import infer_signature
from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame

from pipelines.core.columns import count_below
from pipelines.models import lifecycle, registry
from pipelines.models.propensity import feature_importances
from pipelines.models.specs import ModelSpec
from pipelines.core import plots
from pipelines.core.context import RunContext
from pipelines.quality import model_gates
from pipelines.quality.drift import reference_profile
from pipelines.quality.gate import QualityChecks
from pipelines.core.reproducible import in_canonical_order

PREDICTION = "prediction"
LEDGER_METRICS = ("holdout_mae", "holdout_rmse", "holdout_r2", "holdout_total_ratio", "holdout_rows",
                  "training_rows", "model_version", "promoted", "reused")
DECILES_ARTIFACT = "holdout_deciles.json"


def regression_metrics(scored: DataFrame) -> dict[str, float]:
    """MAE, RMSE, R^2 and totals of a scored holdout (`label`, `prediction`), in one pass."""
    error = F.col(PREDICTION) - F.col("label")
    row = scored.agg(F.count(F.lit(1)).alias("rows"), F.avg(F.abs(error)).alias("mae"),
                     F.avg(error * error).alias("mse"), F.var_pop("label").alias("variance"),
                     F.sum("label").alias("actual"), F.sum(PREDICTION).alias("predicted")).first()
    mse, variance = float(row["mse"] or 0.0), float(row["variance"] or 0.0)
    actual, predicted = float(row["actual"] or 0.0), float(row["predicted"] or 0.0)
    return {"holdout_mae": float(row["mae"] or 0.0), "holdout_rmse": mse ** 0.5,
            # Against predicting the holdout's own mean; no variance: no better than it.
            "holdout_r2": 1.0 - mse / variance if variance > 0 else 0.0,
            "holdout_total_actual": actual, "holdout_total_predicted": predicted,
            "holdout_total_ratio": predicted / actual if actual else 0.0, "holdout_rows": float(row["rows"])}


def prediction_deciles(scored: DataFrame, groups: int = 10) -> list[dict[str, float]]:
    """Mean predicted and mean actual per group of people by predicted value (cut points from
    one approximate quantile aggregation)."""
    cuts = scored.agg(F.percentile_approx(PREDICTION, [k / groups for k in range(1, groups)], 10_000)
                      .alias("cuts")).first()["cuts"] or []
    group = count_below(F.col(PREDICTION), sorted(set(cuts)))
    rows = (scored.groupBy(group.alias("group"))
            .agg(F.avg(PREDICTION).alias("predicted"), F.avg("label").alias("actual"),
                 F.count(F.lit(1)).alias("people"))
            .orderBy("group").collect())
    return [{"group": int(r["group"]) + 1, "predicted": r["predicted"], "actual": r["actual"], "people": r["people"]}
            for r in rows]


def _search(ctx: RunContext, spec: ModelSpec, train: DataFrame, plan, inputs: list[str],
            fit: Callable[[DataFrame, list[str], dict], PipelineModel]) -> tuple[dict, list[dict]]:
    """Conf's params, or the candidate of `search` with the lowest RMSE on the latest training
    snapshot when fitted on the earlier ones."""
    candidates = lifecycle.search_candidates(ctx, spec.key, dict(ctx.cfg.get(f"models.{spec.key}.params", None) or {}),
                                             plan)
    if len(candidates) == 1:
        return candidates[0], []
    latest = F.col("as_of_date") == F.lit(plan.training[-1])
    results = []
    for settings in candidates:
        model = fit(train.where(~latest), inputs, settings)
        rmse = regression_metrics(model.transform(train.where(latest)))["holdout_rmse"]
        results.append({"params": settings, "validation_rmse": rmse})
    ctx.progress("search: " + "; ".join(f"{r['params']} RMSE {r['validation_rmse']:.3f}" for r in results))
    return min(results, key=lambda r: r["validation_rmse"])["params"], results


def fit_and_register(ctx: RunContext, checks: QualityChecks, spec: ModelSpec, stored: DataFrame, plan,
                     experiment_id: str, run_params: Callable[[list[str], dict], dict]) -> dict:
    """`run_params(inputs, settings)`: what the MLflow run logs as parameters (the caller's,
    shared with the classifiers)."""
    cfg = ctx.cfg
    model_cfg = cfg.get(f"models.{spec.key}")
    name = spec.registered_name
    train = in_canonical_order(stored.where("split = 'train'"), "person_id", "as_of_date").persist(
        StorageLevel.MEMORY_AND_DISK)
    holdout = stored.where("split = 'holdout'")
    inputs = spec.inputs(cfg.get("features.windows_days"))
    fit = spec.definition.fitter(int(model_cfg["seed"]))
    settings, search = _search(ctx, spec, train, plan, inputs, fit)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.key}-{ctx.run_date}") as mlrun:
        mlflow.log_params(run_params(inputs, settings))
        if search:
            mlflow.log_dict({"validation_as_of": plan.training[-1].isoformat(), "candidates": search},
                            "hyperparameter_search.json")
        ctx.progress(f"fitting {spec.definition.entry_point or spec.definition.estimator.replace('_', ' ')}")
        model = fit(train, inputs, settings)
        scored = model.transform(holdout).cache()
        metrics = regression_metrics(scored)
        deciles = prediction_deciles(scored)
        importances = feature_importances(model, inputs)
        drift_reference = reference_profile(scored.select(*inputs, PREDICTION), inputs + [PREDICTION],
                                            int(cfg.get("quality.drift.bins")))
        scored.unpersist()
        metrics["training_rows"] = float(train.count())
        train.unpersist()
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"deciles": deciles, "importances": importances}, DECILES_ARTIFACT)
        mlflow.log_dict(drift_reference, registry.DRIFT_ARTIFACT)
        figures = {"plots/holdout_deciles.png": plots.predicted_actual_figure(deciles)}
        if importances:
            figures["plots/feature_importances.png"] = plots.importance_figure(importances)
        for path, fig in figures.items():
            mlflow.log_figure(fig, path)
            plots.close(fig)
        ctx.progress(f"holdout MAE {metrics['holdout_mae']:.3f}, RMSE {metrics['holdout_rmse']:.3f}, "
                     f"R2 {metrics['holdout_r2']:.3f}, predicted/actual total {metrics['holdout_total_ratio']:.3f}")
        sample = holdout.select(*inputs).limit(5).toPandas()
        info = mlflow.spark.log_model(model, "model", registered_model_name=name,
                                      signature=infer_signature(sample, [0.0] * len(sample)),
                                      pip_requirements=[f"pyspark=={ctx.spark.version}"])
        version = str(info.registered_model_version)

    champion_rmse, note = lifecycle.champion_on_holdout(holdout, name, inputs,
                                                        lambda scored: regression_metrics(scored)["holdout_rmse"])
    rules = {**cfg.get("quality.regression_promotion"), **(model_cfg.get("promotion") or {})}
    decision = model_gates.regression_promotion(metrics["holdout_r2"], metrics["holdout_rmse"], champion_rmse,
                                                float(rules["min_r2"]), float(rules["max_rmse_increase"]), note)
    outputs = {**metrics, "model_version": int(version), "reused": 0, "mlflow_run_id": mlrun.info.run_id}
    return lifecycle.register_decision(ctx, checks, name, version, metrics, decision, outputs, optional=True)
