"""Propensity models (convert, churn): a binary label per person and as-of date. Pure
Spark ML, no I/O.

Training uses several past as-of dates; the holdout is the latest as-of date whose
label window has fully happened before the run date:

    holdout  = run_date - horizon
    training = holdout - k * cadence, k = 1..snapshots   (each window ends by the holdout)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Sequence

import numpy as np
import pyspark.sql.functions as F
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression, LogisticRegressionModel
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame

from pipelines.core.columns import count_below


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


def baseline_pipeline(features: Sequence[str]) -> Pipeline:
    """Standardised logistic regression: the bar the trees must clear to be worth their cost."""
    assembler = VectorAssembler(inputCols=list(features), outputCol="raw_features", handleInvalid="error")
    scaler = StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True)
    return Pipeline(stages=[assembler, scaler,
                            LogisticRegression(featuresCol="features", labelCol="label", regParam=0.01)])


def fit_logistic(features: Sequence[str], rows: DataFrame) -> PipelineModel:
    """`baseline_pipeline` fitted on `rows` in one partition, in their order. L-BFGS and the
    scaler sum over partitions with `treeAggregate`, whose last level adds the partitions'
    sums in the order their tasks finish, so a fit over several partitions can differ in its
    last bits from run to run, and so would a resumed night's scores. One partition has one
    sum, added in the rows' order."""
    return baseline_pipeline(features).fit(rows.coalesce(1))


def holdout_auc(model: PipelineModel, holdout: DataFrame) -> float:
    evaluator = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="rawPrediction")
    return evaluator.evaluate(model.transform(holdout), {evaluator.metricName: "areaUnderROC"})


def parameter_grid(base: dict, search: dict | None) -> list[dict]:
    """Every combination of the `search` values over the `base` settings, in a fixed order."""
    unknown = sorted(set(search or {}) - set(base))
    if unknown:
        raise ValueError(f"search names settings the model does not have: {unknown}; known: {sorted(base)}")
    candidates = [dict(base)]
    for name, values in (search or {}).items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"search.{name} must be a non-empty list, got {values!r}")
        candidates = [{**c, name: v} for c in candidates for v in values]
    return candidates


def time_based_search(earlier: DataFrame, latest: DataFrame, candidates: list[dict],
                      fit: Callable[[DataFrame, dict], PipelineModel]) -> tuple[dict, list[dict]]:
    """Fit each candidate (`fit(rows, settings)`) on the earlier snapshots, score the latest:
    (best settings, every result)."""
    results = []
    for params in candidates:
        model = fit(earlier, params)
        results.append({"params": params, "validation_auc_roc": holdout_auc(model, latest)})
    best = max(results, key=lambda r: r["validation_auc_roc"])
    return best["params"], results


SCORE_COLUMN = "probability"   # a classifier's P(label = 1), as scoring stores it


def positive_probability() -> Column:
    """P(label = 1) from Spark ML's `probability` vector."""
    return vector_to_array(F.col("probability"))[1]


def evaluate(scored: DataFrame) -> dict[str, float]:
    """AUC-ROC, PR-AUC, Brier score and the base rate of a scored holdout (distributed;
    nothing collected but the numbers)."""
    evaluator = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="rawPrediction")
    counts = scored.agg(F.count(F.lit(1)).alias("rows"), F.sum("label").alias("positives"),
                        F.avg((positive_probability() - F.col("label")) ** 2).alias("brier")).first()
    return {
        "holdout_auc_roc": evaluator.evaluate(scored, {evaluator.metricName: "areaUnderROC"}),
        "holdout_pr_auc": evaluator.evaluate(scored, {evaluator.metricName: "areaUnderPR"}),
        "holdout_brier": float(counts["brier"] or 0.0),
        "holdout_rows": float(counts["rows"]),
        "holdout_positive_rate": float(counts["positives"] or 0) / max(1, counts["rows"]),
    }


def cumulative_gains(scored: DataFrame, groups: int = 10) -> list[dict[str, float]]:
    """People in `groups` by descending probability (cut points from one approximate
    quantile aggregation): per group, the share of people targeted so far, the share of
    positives captured so far, and the lift (captured / targeted). Ties stay together,
    so groups can differ in size; the shares count actual people."""
    probability = positive_probability()
    cuts = scored.agg(F.percentile_approx(probability, [k / groups for k in range(1, groups)], 10_000)
                      .alias("cuts")).first()["cuts"] or []
    above = count_below(probability, cuts)
    rows = (scored.select((F.lit(groups - 1) - above).alias("group"), "label")
            .groupBy("group").agg(F.count(F.lit(1)).alias("n"), F.sum("label").alias("pos"))
            .collect())
    people = sum(r["n"] for r in rows) or 1
    positives = sum(r["pos"] for r in rows) or 1.0
    gains, targeted, captured = [], 0, 0.0
    for row in sorted(rows, key=lambda r: r["group"]):
        targeted += row["n"]
        captured += row["pos"]
        gains.append({"group": int(row["group"]) + 1, "targeted": targeted / people, "captured": captured / positives,
                      "lift": (captured / positives) / (targeted / people)})
    return gains


def reliability_curve(scored: DataFrame, bins: int = 10) -> list[dict[str, float]]:
    """Per equal-width probability bin: mean predicted probability, observed rate, people."""
    probability = positive_probability()
    rows = (scored.select(F.least(F.floor(probability * bins), F.lit(bins - 1)).alias("bin"),
                          probability.alias("p"), "label")
            .groupBy("bin").agg(F.avg("p").alias("predicted"), F.avg("label").alias("observed"),
                                F.count(F.lit(1)).alias("people"))
            .orderBy("bin").collect())
    return [{"bin": int(r["bin"]), "predicted": r["predicted"], "observed": r["observed"], "people": r["people"]}
            for r in rows]


def feature_importances(model: PipelineModel, inputs: Sequence[str]) -> dict[str, float]:
    """Each input's share of importance (sums to 1): the trees' split gain, or a logistic
    regression's coefficient sizes (on standardised inputs, so comparable); empty for a
    model with neither over exactly these inputs."""
    last = model.stages[-1]
    if hasattr(last, "featureImportances"):
        importances = last.featureImportances.toArray()
    elif isinstance(last, LogisticRegressionModel) and last.numClasses == 2:
        sizes = np.abs(last.coefficients.toArray())
        importances = sizes / sizes.sum() if sizes.sum() > 0 else sizes
    else:
        return {}
    if len(importances) != len(inputs):
        return {}
    return {name: float(value) for name, value in zip(inputs, importances, strict=True)}


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
