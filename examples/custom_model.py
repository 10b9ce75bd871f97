"""A programmatic custom model: the interface, and a template to copy.

Name the function in conf and the pipeline does the rest (point-in-time training sets,
gates, MLflow, nightly scoring, the profile table and the XDM export):

    models:
      custom: [big_spender]
      big_spender:
        kind: classifier
        entry_point: "examples.custom_model:fit"   # your_package.module:function
        params: {reg_param: 0.01}                              # handed to the function
        ...                                                    # label, horizon, etc. as for any model

The function is called as `fit(training, inputs)`:
- `training`: a DataFrame with `inputs.features` (numeric, never null), `inputs.label`
  (1.0 or 0.0), `person_id` and `as_of_date`, one row per person and training snapshot;
- `inputs`: a `TrainingInputs` with `features`, `label`, `seed` and `params` (conf's
  `params`, or one candidate of `search`);
and returns a fitted Spark ML model (a `PipelineModel`, or a single model) whose
`transform` adds `rawPrediction` and `probability` (P(label = 1) at index 1) as every
Spark ML classifier does. Every stage must be a Spark ML stage that can be saved (the
model is logged with `mlflow.spark`). Ship the module with `--py-files` or install it.

This template: logistic regression on log-scaled, standardised inputs, with the classes
weighted to balance, so that a rare label is not drowned by the common one.
"""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import SQLTransformer, StandardScaler, VectorAssembler
from pyspark.sql import DataFrame

from pipelines.models.custom import TrainingInputs

WEIGHT = "class_weight"


def fit(training: DataFrame, inputs: TrainingInputs) -> PipelineModel:
    positive_rate = training.agg(F.avg(inputs.label)).first()[0] or 0.0
    if not 0.0 < positive_rate < 1.0:
        raise ValueError(f"the training rows hold one class only (positive rate {positive_rate})")
    # Each class carries half the total weight, however rare the positives are.
    weighted = training.withColumn(WEIGHT, F.when(F.col(inputs.label) == 1.0, 0.5 / positive_rate)
                                   .otherwise(0.5 / (1.0 - positive_rate)))
    logged = [f"log_{name}" for name in inputs.features]
    # Counts and money are skewed; log1p brings their long tails in before scaling.
    log_scale = SQLTransformer(statement="SELECT *, " + ", ".join(
        f"log1p(greatest(`{name}`, 0D)) AS `{out}`" for name, out in zip(inputs.features, logged, strict=True))
        + " FROM __THIS__")
    stages = [
        log_scale,
        VectorAssembler(inputCols=logged, outputCol="raw_features", handleInvalid="error"),
        StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True),
        LogisticRegression(featuresCol="features", labelCol=inputs.label, weightCol=WEIGHT,
                           regParam=float(inputs.params.get("reg_param", 0.01)),
                           elasticNetParam=float(inputs.params.get("elastic_net_param", 0.0))),
    ]
    return Pipeline(stages=stages).fit(weighted)
