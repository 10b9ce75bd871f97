"""How a regressor's predictions compare with what happened: MAE, RMSE, R^2 and the totals,
and predicted against actual per decile of prediction.

    metrics = regression_metrics(model.transform(holdout))   # `label` beside `prediction`
"""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from pipelines.core.columns import count_below

PREDICTION = "prediction"   # the output column of every regressor the pipeline scores with


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
