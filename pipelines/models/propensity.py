"""Propensity to convert: will the person buy within the horizon? Pure Spark ML, no I/O.

Training uses several past as-of dates; the holdout is the latest as-of date whose
label window has fully happened before the run date:

    holdout  = run_date - horizon
    training = holdout - k * cadence, k = 1..snapshots   (each window ends by the holdout)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Sequence

import pyspark.sql.functions as F
from pyspark.ml import Pipeline
from pyspark.ml.classification import GBTClassifier
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame


@dataclass(frozen=True)
class SnapshotPlan:
    holdout: date
    training: tuple[date, ...]


def snapshot_plan(run_date: date, horizon_days: int, cadence_days: int, snapshots: int) -> SnapshotPlan:
    """As-of dates for training and holdout; no training label window reaches the holdout's."""
    if cadence_days < horizon_days:
        raise ValueError(f"cadence_days ({cadence_days}) must be at least horizon_days ({horizon_days}) "
                         "so training labels never overlap the holdout window")
    if snapshots < 1:
        raise ValueError(f"training_snapshots must be at least 1, got {snapshots}")
    holdout = run_date - timedelta(days=horizon_days)
    training = tuple(holdout - timedelta(days=cadence_days * k) for k in range(snapshots, 0, -1))
    return SnapshotPlan(holdout=holdout, training=training)


def classifier_pipeline(features: Sequence[str], params: dict, seed: int) -> Pipeline:
    """VectorAssembler + gradient-boosted trees; params come from conf (models.*.gbt)."""
    assembler = VectorAssembler(inputCols=list(features), outputCol="features", handleInvalid="error")
    gbt = GBTClassifier(
        featuresCol="features", labelCol="label", seed=seed,
        maxIter=int(params["max_iter"]), maxDepth=int(params["max_depth"]),
        stepSize=float(params["step_size"]), subsamplingRate=float(params["subsampling_rate"]),
    )
    return Pipeline(stages=[assembler, gbt])


def positive_probability() -> Column:
    """P(label = 1) from Spark ML's `probability` vector."""
    return vector_to_array(F.col("probability"))[1]


def evaluate(scored: DataFrame) -> dict[str, float]:
    """AUC-ROC and PR-AUC of a scored holdout (distributed; nothing collected)."""
    evaluator = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="rawPrediction")
    counts = scored.agg(F.count(F.lit(1)).alias("rows"), F.sum("label").alias("positives")).first()
    return {
        "holdout_auc_roc": evaluator.evaluate(scored, {evaluator.metricName: "areaUnderROC"}),
        "holdout_pr_auc": evaluator.evaluate(scored, {evaluator.metricName: "areaUnderPR"}),
        "holdout_rows": float(counts["rows"]),
        "holdout_positive_rate": float(counts["positives"] or 0) / max(1, counts["rows"]),
    }


def roc_points(scored: DataFrame, bins: int = 100) -> list[list[float]]:
    """ROC curve from probabilities binned into `bins` (one small aggregation, then cumulative sums)."""
    probability = positive_probability()
    per_bin = (scored.select(F.least(F.floor(probability * bins), F.lit(bins - 1)).alias("bin"), "label")
               .groupBy("bin").agg(F.sum("label").alias("pos"), F.count(F.lit(1)).alias("n"))
               .collect())
    positives = sum(r["pos"] for r in per_bin) or 1.0
    negatives = sum(r["n"] - r["pos"] for r in per_bin) or 1.0
    points, tp, fp = [[0.0, 0.0]], 0.0, 0.0
    for row in sorted(per_bin, key=lambda r: -r["bin"]):
        tp += row["pos"]
        fp += row["n"] - row["pos"]
        points.append([round(fp / negatives, 6), round(tp / positives, 6)])
    return points
