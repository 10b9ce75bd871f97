"""Training the segments (pipelines/models/segments.py) on the run date's feature rows:
every k of the candidates is fitted, the highest silhouette wins, and the segments are
named from its centroids. The Spark ML pipeline is registered in MLflow with the segment
table (`segments.json`) beside it, and becomes champion through its gate: a silhouette
of at least `min_silhouette`, no worse than the champion's on the same people.
"""

from __future__ import annotations

import mlflow
import mlflow.spark
import pyspark.sql.functions as F

from pipelines.core import lakehouse
from pipelines.models import lifecycle, registry
from pipelines.models.segments import CLUSTER, describe, fit_segments, silhouette
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.quality.model_gates import Decision, segments_promotion
from pipelines.core.reproducible import in_canonical_order

KEY = "segments"
SEGMENTS_ARTIFACT = "segments.json"
LEDGER_METRICS = ("silhouette", "k", "people", "model_version", "promoted", "reused")


def train(ctx: RunContext, checks: QualityChecks, experiment_id: str) -> dict:
    cfg, spark = ctx.cfg, ctx.spark
    model_cfg = cfg.get(f"models.{KEY}")
    name = str(model_cfg["registered_name"])
    earlier = lifecycle.already_trained(ctx, name, int(model_cfg["retrain_every_days"]))
    if earlier is not None:
        return lifecycle.reused(name, *earlier)
    features, log_features = list(model_cfg["features"]), list(model_cfg.get("log_features") or [])
    path = cfg.table("features")
    version_read = lakehouse.version(spark, path)
    rows = in_canonical_order(spark.read.format("delta").option("versionAsOf", version_read).load(path)
                              .where(F.col("as_of_date") == F.lit(ctx.run_date)).select("person_id", *features),
                              "person_id").cache()
    try:
        people = rows.count()
        needed = int(cfg.get("quality.sufficiency.min_labels_per_class"))
        decision = Decision(allowed=people >= needed, check="data_sufficiency", rule=f"min_labels_per_class={needed}",
                            observed=f"{people} people with a feature row on {ctx.run_date}",
                            reason="" if people >= needed else
                            f"only {people} people to segment" if people else
                            f"no feature rows as of {ctx.run_date}; run `enrich features` for that date first")
        if not decision.allowed:
            return lifecycle.refused(ctx, checks, name, decision, f"training refused: {decision.reason}")
        checks.add([lifecycle.gate_outcome(name, decision, "error")], 0.0)
        candidates = [int(k) for k in model_cfg["k_candidates"]]
        ctx.progress(f"k-means on {people} people, k in {candidates}, chosen by silhouette")
        model, search = fit_segments(rows, features, log_features, candidates, int(model_cfg["seed"]), ctx.progress)
        clustered = model.transform(rows).cache()
        score = silhouette(clustered)
        sizes = {int(r[CLUSTER]): int(r["count"]) for r in clustered.groupBy(CLUSTER).count().collect()}
        clustered.unpersist()
        segments = describe(model, features, log_features, sizes)
        champion_score, note = _champion_silhouette(name, rows, features)
        sample = rows.select(*features).limit(5).toPandas()
    finally:
        rows.unpersist()
    k = len(sizes)
    ctx.progress(f"{k} segments, silhouette {score:.3f}: "
                 + "; ".join(f"{s['segment_id']} {s['segment_name']} ({s['people']})" for s in segments))
    metrics = {"silhouette": score, "k": float(k), "people": float(people)}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{KEY}-{ctx.run_date}") as mlrun:
        mlflow.log_params({"model": KEY, "run_date": ctx.run_date.isoformat(), "features": ",".join(features),
                           "log_features": ",".join(log_features), "k_candidates": ",".join(map(str, candidates)),
                           "features_path": path, "features_version": version_read, "seed": model_cfg["seed"]})
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"criterion": "silhouette", "candidates": search}, "hyperparameter_search.json")
        mlflow.log_dict({"segments": segments}, SEGMENTS_ARTIFACT)
        info = mlflow.spark.log_model(model, "model", registered_model_name=name,
                                      signature=registry.signature(sample, [1] * len(sample)),
                                      pip_requirements=[f"pyspark=={spark.version}"])
        version = str(info.registered_model_version)
    gate = model_cfg["promotion"]
    decision = segments_promotion(score, champion_score, float(gate["min_silhouette"]),
                                  float(gate["max_silhouette_drop"]), note)
    outputs = {**metrics, "model_version": int(version), "reused": 0, "mlflow_run_id": mlrun.info.run_id,
               "segments": segments}
    return lifecycle.register_decision(ctx, checks, name, version, metrics, decision, outputs)


def _champion_silhouette(name: str, rows, features: list[str]) -> tuple[float | None, str]:
    current = registry.champion(name)
    if current is None:
        return None, "no champion yet"
    if registry.run_params(current.run_id).get("features") != ",".join(features):
        return None, f"champion v{current.version} used other features; not compared"
    return silhouette(registry.load_spark_model(name, current.version).transform(rows)), f"champion v{current.version}"


def champion_segments(run_id: str) -> list[dict]:
    return registry.load_dict(run_id, SEGMENTS_ARTIFACT)["segments"]
