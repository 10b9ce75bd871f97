"""The segments (pipelines/models/segments.py) on the run date's feature rows: every k of the
candidates is fitted, the highest silhouette wins, and the segments are named from its
centroids. The Spark ML pipeline is registered in MLflow with the segment table
(`segments.json`) beside it, and becomes champion through its gate: a silhouette of at
least `min_silhouette`, no worse than the champion's on the same people.
"""

from __future__ import annotations

import pyspark.sql.functions as F
from mlflow.entities.model_registry import ModelVersion

from pipelines.core import lakehouse
from pipelines.core.context import RunContext
from pipelines.core.reproducible import in_canonical_order
from pipelines.models import artifacts, registry
from pipelines.models.segments import CLUSTER, describe, fit_segments, silhouette
from pipelines.models.specs import SEGMENTS
from pipelines.models.training.lifecycle import Candidate, ConfiguredTrainer
from pipelines.quality.model_gates import Decision, segments_promotion


class SegmentsTrainer(ConfiguredTrainer):
    key = SEGMENTS
    ledger_metrics = ("silhouette", "k", "people", "model_version", "promoted", "reused")
    purpose = "k-means on value and behaviour"

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.features = list(self.model_cfg["features"])
        self.log_features = list(self.model_cfg.get("log_features") or [])
        self.rows = None

    def prepare(self) -> Decision:
        ctx = self.ctx
        self.path = ctx.cfg.table("features")
        self.version_read = lakehouse.version(ctx.spark, self.path)
        self.rows = in_canonical_order(
            ctx.spark.read.format("delta").option("versionAsOf", self.version_read).load(self.path)
            .where(F.col("as_of_date") == F.lit(ctx.run_date)).select("person_id", *self.features),
            "person_id").cache()
        self.people = people = self.rows.count()
        needed = int(ctx.cfg.get("quality.sufficiency.min_labels_per_class"))
        return Decision(allowed=people >= needed, check="data_sufficiency", rule=f"min_labels_per_class={needed}",
                        observed=f"{people} people with a feature row on {ctx.run_date}",
                        reason="" if people >= needed else
                        f"only {people} people to segment" if people else
                        f"no feature rows as of {ctx.run_date}; run `enrich features` for that date first")

    def fit(self) -> Candidate:
        ctx, rows, features, log_features = self.ctx, self.rows, self.features, self.log_features
        candidates = [int(k) for k in self.model_cfg["k_candidates"]]
        ctx.progress(f"k-means on {self.people} people, k in {candidates}, chosen by silhouette")
        model, search = fit_segments(rows, features, log_features, candidates, int(self.model_cfg["seed"]),
                                     ctx.progress)
        clustered = model.transform(rows).cache()
        score = silhouette(clustered)
        sizes = {int(r[CLUSTER]): int(r["count"]) for r in clustered.groupBy(CLUSTER).count().collect()}
        clustered.unpersist()
        segments = describe(model, features, log_features, sizes)
        sample = rows.select(*features).limit(5).toPandas()
        k = len(sizes)
        ctx.progress(f"{k} segments, silhouette {score:.3f}: "
                     + "; ".join(f"{s['segment_id']} {s['segment_name']} ({s['people']})" for s in segments))
        spark_version = ctx.spark.version

        def log_model(name: str):
            return registry.log_spark_model(model, "model", registered_model_name=name,
                                            signature=registry.signature(sample, [1] * len(sample)),
                                            pip_requirements=[f"pyspark=={spark_version}"])

        return Candidate(
            metrics={"silhouette": score, "k": float(k), "people": float(self.people)},
            params={"model": self.key, "run_date": ctx.run_date.isoformat(), "features": ",".join(features),
                    "log_features": ",".join(log_features), "k_candidates": ",".join(map(str, candidates)),
                    "features_path": self.path, "features_version": self.version_read,
                    "seed": self.model_cfg["seed"]},
            log_model=log_model,
            artifacts={artifacts.SEARCH: {"criterion": "silhouette", "candidates": search},
                       artifacts.SEGMENTS: {"segments": segments}},
            outputs={"segments": segments})

    def measure_champion(self, champion: ModelVersion) -> tuple[float | None, str]:
        if registry.run_params(champion.run_id).get("features") != ",".join(self.features):
            return None, f"champion v{champion.version} used other features; not compared"
        model = registry.load_spark_model(self.registered_name, champion.version)
        return silhouette(model.transform(self.rows)), f"champion v{champion.version}"

    def promotion(self, metrics: dict[str, float], champion: float | None, note: str) -> Decision:
        gate = self.model_cfg["promotion"]
        return segments_promotion(metrics["silhouette"], champion, float(gate["min_silhouette"]),
                                  float(gate["max_silhouette_drop"]), note)

    def release(self) -> None:
        if self.rows is not None:
            self.rows.unpersist()
