"""The supervised way to lifetime value: gradient-boosted trees on the person features,
predicting what a buyer spends in the horizon after the as-of date.

    train on buyers as of holdout - horizon, labelled with their spend in the next horizon
    judge on buyers as of holdout, labelled with their spend in [holdout, run_date)

It is compared with each counting model + Gamma-Gamma on the same buyers
(pipelines/models/training/lifetime_value.py); the way with the lowest MAE is registered.
"""

from __future__ import annotations

from datetime import date
from typing import Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.ml import Pipeline
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import GBTRegressor
from pyspark.sql import DataFrame

from pipelines.models.lifetime_value import actual_value

PREDICTION = "regressor_value"


def regressor_pipeline(inputs: Sequence[str], settings: Mapping, seed: int) -> Pipeline:
    return Pipeline(stages=[
        VectorAssembler(inputCols=list(inputs), outputCol="features", handleInvalid="keep"),
        GBTRegressor(labelCol="actual_value", featuresCol="features", predictionCol=PREDICTION,
                     maxIter=int(settings["max_iter"]), maxDepth=int(settings["max_depth"]),
                     stepSize=float(settings["step_size"]), subsamplingRate=float(settings["subsampling_rate"]),
                     seed=seed),
    ])


def labelled_buyers(events: DataFrame, features: DataFrame, as_of: date, horizon_days: int) -> DataFrame:
    """The feature rows (as of `as_of`) of people who bought before it, with what they bought
    in the horizon after it (`actual_value`, `actual_purchases`; 0 when nothing)."""
    return (features.where(F.col("lifetime_purchases") > 0)
            .join(events.transform(actual_value(as_of, horizon_days)), "person_id", "left")
            .fillna(0.0, subset=["actual_value", "actual_purchases"]))


def non_negative_value(prediction: str = PREDICTION):
    """Spend is never negative; squared-error trees can undershoot zero."""
    return F.greatest(F.col(prediction), F.lit(0.0))
