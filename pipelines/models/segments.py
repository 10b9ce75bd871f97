"""Segments: k-means on standardised value and behaviour features, one Spark ML pipeline.

    log1p of the heavy-tailed features (counts, money) -> assemble -> standardise (mean 0,
    sd 1) -> k-means for every k of the candidates -> the k of the highest silhouette

Silhouette (Spark's ClusteringEvaluator, squared Euclidean) is the stated criterion: how
much closer people are to their own segment than to the next one, from -1 to 1. Segments
are numbered by size (1 is the largest) and named from their centroids: the features
furthest from the average, each read as a phrase ("bought recently", "big baskets").
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pyspark.sql.functions as F
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import SQLTransformer, StandardScaler, VectorAssembler
from pyspark.sql import DataFrame

from pipelines.core.errors import BadInputError

INPUT = "segment_input"
STANDARDISED = "segment_features"
CLUSTER = "cluster"
# How a centroid far above (or below) the average reads, per feature.
PHRASES = {
    "days_since_last_event": ("inactive lately", "active recently"),
    "days_since_last_purchase": ("long since a purchase", "bought recently"),
    "tenure_days": ("long-standing", "new"),
    "lifetime_purchases": ("frequent buyers", "rarely buy"),
    "lifetime_revenue": ("high lifetime spend", "low lifetime spend"),
    "avg_order_value": ("big baskets", "small baskets"),
    "distinct_categories": ("broad interests", "narrow interests"),
}
# Phrases start at this distance (in standard deviations) from the average.
NOTABLE_Z = 0.5


def _phrase(feature: str, z: float) -> str:
    if feature in PHRASES:
        return PHRASES[feature][0 if z > 0 else 1]
    return f"{'high' if z > 0 else 'low'} {feature.replace('_', ' ')}"


def preparation(features: Sequence[str], log_features: Sequence[str]) -> Pipeline:
    """Feature rows -> `segment_features`, the standardised vector k-means reads."""
    unknown = sorted(set(log_features) - set(features))
    if unknown:
        raise BadInputError(f"models.segments.log_features names {unknown}, which are not in models.segments.features")
    columns = ", ".join(f"log1p(greatest(CAST(`{f}` AS DOUBLE), 0D)) AS `_seg_{f}`" if f in log_features
                        else f"CAST(`{f}` AS DOUBLE) AS `_seg_{f}`" for f in features)
    return Pipeline(stages=[
        SQLTransformer(statement=f"SELECT *, {columns} FROM __THIS__"),
        VectorAssembler(inputCols=[f"_seg_{f}" for f in features], outputCol=INPUT, handleInvalid="error"),
        StandardScaler(inputCol=INPUT, outputCol=STANDARDISED, withMean=True, withStd=True),
    ])


def silhouette(clustered: DataFrame) -> float:
    return float(ClusteringEvaluator(featuresCol=STANDARDISED, predictionCol=CLUSTER,
                                     metricName="silhouette", distanceMeasure="squaredEuclidean")
                 .evaluate(clustered))


def fit_segments(rows: DataFrame, features: Sequence[str], log_features: Sequence[str], candidates: Sequence[int],
                 seed: int, progress=lambda message: None) -> tuple[PipelineModel, list[dict]]:
    """The pipeline of the k with the highest silhouette, and every candidate's score."""
    if not candidates or min(candidates) < 2:
        raise BadInputError(f"models.segments.k_candidates must be numbers >= 2, got {list(candidates)}")
    prepared_model = preparation(features, log_features).fit(rows)
    prepared = prepared_model.transform(rows).select(STANDARDISED).cache()
    try:
        results, fitted = [], {}
        for k in sorted(set(int(k) for k in candidates)):
            model = KMeans(k=k, seed=seed, featuresCol=STANDARDISED, predictionCol=CLUSTER, maxIter=40).fit(prepared)
            score = silhouette(model.transform(prepared))
            results.append({"k": k, "silhouette": score})
            fitted[k] = model
            progress(f"k={k}: silhouette {score:.3f}")
    finally:
        prepared.unpersist()
    best = max(results, key=lambda r: r["silhouette"])
    return PipelineModel(stages=list(prepared_model.stages) + [fitted[best["k"]]]), results


def describe(model: PipelineModel, features: Sequence[str], log_features: Sequence[str],
             sizes: dict[int, int]) -> list[dict]:
    """Each cluster as a segment: id by size, a readable name, and its centroid in the
    features' own units (a typical member) and in standard deviations from the average."""
    scaler, kmeans = model.stages[-2], model.stages[-1]
    mean, std = np.array(scaler.mean.toArray()), np.array(scaler.std.toArray())
    order = sorted(sizes, key=lambda c: (-sizes[c], c))
    segments, used = [], set()
    for segment_id, cluster in enumerate(order, start=1):
        z = np.array(kmeans.clusterCenters()[cluster])
        raw = z * std + mean
        typical = {f: float(np.expm1(v) if f in log_features else v) for f, v in zip(features, raw, strict=True)}
        notable = [i for i in np.argsort(-np.abs(z)) if abs(z[i]) >= NOTABLE_Z]
        phrases = [_phrase(features[i], float(z[i])) for i in notable]
        name = ", ".join(phrases[:2]) or "close to the average"
        for extra in phrases[2:]:
            if name not in used:
                break
            name = f"{name}, {extra}"
        if name in used:
            name = f"{name} ({segment_id})"
        used.add(name)
        segments.append({"cluster": int(cluster), "segment_id": segment_id, "segment_name": name,
                         "people": int(sizes[cluster]),
                         "centroid": {f: round(v, 2) for f, v in typical.items()},
                         "centroid_z": {f: round(float(v), 2) for f, v in zip(features, z, strict=True)}})
    return segments


def assign(model: PipelineModel, segments: Sequence[dict]) -> Callable[[DataFrame], DataFrame]:
    """Feature rows -> person_id, segment_id, segment_name (by the model's clusters)."""
    def _apply(rows: DataFrame) -> DataFrame:
        names = rows.sparkSession.createDataFrame([(s["cluster"], s["segment_id"], s["segment_name"])
                                                   for s in segments], f"{CLUSTER} int, segment_id int, "
                                                                       "segment_name string")
        return (model.transform(rows).select("person_id", F.col(CLUSTER).cast("int").alias(CLUSTER))
                .join(F.broadcast(names), CLUSTER).drop(CLUSTER))
    return _apply
