"""The train step: training set from past snapshots, fit, evaluate on the holdout, register.

Idempotent per run date: a version already trained for the run date is reused, so a
rerun of the nightly scores with the same model and writes the same rows.
"""

from __future__ import annotations

from datetime import date
from functools import reduce

import mlflow
import mlflow.spark
import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines import lakehouse
from pipelines.errors import GateError
from pipelines.features.build import feature_columns, person_features, with_labels
from pipelines.models import registry
from pipelines.models.propensity import classifier_pipeline, evaluate, roc_points, snapshot_plan
from pipelines.ops.context import RunContext

MODEL_KEY = "convert_propensity"


def labelled_snapshot(events: DataFrame, as_of: date, windows, lookback: int, horizon: int) -> DataFrame:
    return (events.transform(person_features(as_of, windows, lookback))
            .transform(with_labels(events, as_of, horizon)))


def _require_both_classes(name: str, counts: dict) -> None:
    if not counts.get(0.0) or not counts.get(1.0):
        raise GateError(f"training refused: the {name} set has {int(counts.get(1.0, 0))} buyers and "
                        f"{int(counts.get(0.0, 0))} non-buyers; both are needed (is there enough history?)")


def run(ctx: RunContext) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    model_cfg = cfg.get(f"models.{MODEL_KEY}")
    model_name = model_cfg["registered_name"]
    experiment_id = registry.connect(cfg)
    existing = registry.version_trained_for(model_name, ctx.run_date.isoformat())
    if existing is not None:
        ctx.progress(f"{model_name} v{existing.version} was trained for {ctx.run_date}; reusing it")
        return {"model_version": int(existing.version), "reused": 1, "mlflow_run_id": existing.run_id,
                "roc": registry.holdout_roc(existing.run_id),
                **{k: float(v) for k, v in existing.tags.items() if k.startswith("holdout_")}}

    horizon = int(model_cfg["horizon_days"])
    plan = snapshot_plan(ctx.run_date, horizon, int(model_cfg["cadence_days"]),
                         int(model_cfg["training_snapshots"]))
    windows = cfg.get("features.windows_days")
    lookback = int(cfg.get("features.eligibility_lookback_days"))
    events_path = cfg.table("silver_events")
    events_version = lakehouse.version(spark, events_path)
    # Pin the Delta version read, so the run can be reproduced with time travel.
    events = (spark.read.format("delta").option("versionAsOf", events_version).load(events_path)
              .persist(StorageLevel.MEMORY_AND_DISK))  # read by every snapshot and its labels

    snapshots = [labelled_snapshot(events, d, windows, lookback, horizon) for d in plan.training + (plan.holdout,)]
    training_set = (reduce(DataFrame.unionByName, snapshots)
                    .withColumn("training_run_date", F.lit(ctx.run_date).cast("date"))
                    .withColumn("split", F.when(F.col("as_of_date") == F.lit(plan.holdout), "holdout")
                                .otherwise("train")))
    set_path = cfg.table("training_set")
    try:
        lakehouse.replace_where(training_set, set_path, f"training_run_date = '{ctx.run_date.isoformat()}'",
                                partition_by=["training_run_date"])
    finally:
        events.unpersist()
    stored = (lakehouse.read(spark, set_path)
              .where(F.col("training_run_date") == F.lit(ctx.run_date)).cache())
    try:
        return _fit_and_register(ctx, stored, plan, events_path, events_version, experiment_id)
    finally:
        stored.unpersist()


def _fit_and_register(ctx: RunContext, stored: DataFrame, plan, events_path: str, events_version: int,
                      experiment_id: str) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    model_cfg = cfg.get(f"models.{MODEL_KEY}")
    model_name = model_cfg["registered_name"]
    horizon = int(model_cfg["horizon_days"])
    windows = cfg.get("features.windows_days")
    train, holdout = stored.where("split = 'train'"), stored.where("split = 'holdout'")
    class_counts = {(r["split"], r["label"]): r["count"] for r in stored.groupBy("split", "label").count().collect()}
    train_counts = {label: n for (split, label), n in class_counts.items() if split == "train"}
    holdout_counts = {label: n for (split, label), n in class_counts.items() if split == "holdout"}
    _require_both_classes("training", train_counts)
    _require_both_classes("holdout", holdout_counts)
    ctx.progress(f"training set: {sum(train_counts.values())} rows from {len(plan.training)} snapshots, "
                 f"holdout {sum(holdout_counts.values())} rows as of {plan.holdout}")

    inputs = feature_columns(windows)
    estimator = classifier_pipeline(inputs, model_cfg["gbt"], int(model_cfg["seed"]))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{MODEL_KEY}-{ctx.run_date}") as mlrun:
        mlflow.log_params({
            "model": MODEL_KEY, "run_date": ctx.run_date.isoformat(), "horizon_days": horizon,
            "holdout_as_of": plan.holdout.isoformat(),
            "training_as_of": ",".join(d.isoformat() for d in plan.training),
            "silver_events_path": events_path, "silver_events_version": events_version,
            "features": ",".join(inputs), **{f"gbt_{k}": v for k, v in model_cfg["gbt"].items()},
        })
        ctx.progress("fitting gradient-boosted trees")
        model = estimator.fit(train)
        holdout_scored = model.transform(holdout).cache()
        metrics = evaluate(holdout_scored)
        roc = roc_points(holdout_scored)
        holdout_scored.unpersist()
        metrics["training_rows"] = float(sum(train_counts.values()))
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"roc": roc}, registry.ROC_ARTIFACT)
        ctx.progress(f"holdout AUC-ROC {metrics['holdout_auc_roc']:.3f}, PR-AUC {metrics['holdout_pr_auc']:.3f}")
        info = mlflow.spark.log_model(model, "model", registered_model_name=model_name,
                                      pip_requirements=[f"pyspark=={spark.version}"])
        version = str(info.registered_model_version)

    client = mlflow.MlflowClient()
    client.set_model_version_tag(model_name, version, registry.RUN_DATE_TAG, ctx.run_date.isoformat())
    for key, value in metrics.items():
        client.set_model_version_tag(model_name, version, key, f"{value:.6f}")
    minimum = float(model_cfg["min_holdout_auc"])
    metrics.update({"model_version": int(version), "reused": 0, "mlflow_run_id": mlrun.info.run_id, "roc": roc})
    if metrics["holdout_auc_roc"] < minimum:
        current = registry.champion(model_name)
        note = f"champion stays v{current.version}" if current else "there is no champion to score with"
        raise GateError(f"model-quality gate: {model_name} v{version} holdout AUC "
                        f"{metrics['holdout_auc_roc']:.3f} < {minimum}; registered, not promoted; {note}")
    registry.promote(model_name, version)
    ctx.progress(f"{model_name} v{version} is the champion (MLflow run {mlrun.info.run_id})")
    return metrics
