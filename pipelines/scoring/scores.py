"""Probabilities -> scores, percentiles and buckets. Pure transforms.

Percentiles come from 99 approximate cut points computed by one distributed
aggregation (`percentile_approx`), not a global sort or window, so they scale.
"""

from __future__ import annotations

from typing import Callable, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from pipelines.core.columns import count_below

CUT_POINTS = [k / 100 for k in range(1, 100)]


def score_0_100(probability: Column) -> Column:
    return F.round(probability * 100).cast("int")


def percentile_cut_points(df: DataFrame, column: str, accuracy: int = 10_000) -> list[float]:
    """The 1st..99th percentiles of `column` (a 99-number list; empty frame -> [])."""
    row = df.agg(F.percentile_approx(column, CUT_POINTS, accuracy).alias("cuts")).first()
    return list(row["cuts"] or [])


def percentile_from_cut_points(value: Column, cut_points: Sequence[float]) -> Column:
    """1 + the number of cut points strictly below `value`: 1..100, ties share a percentile."""
    if not cut_points:
        return F.lit(None).cast("int")
    return (F.lit(1) + count_below(value, cut_points)).cast("int")


def bucket(percentile: Column, medium_from: int, high_from: int) -> Column:
    """low / medium / high by percentile thresholds from conf."""
    if not 1 <= medium_from < high_from <= 100:
        raise ValueError(f"bucket thresholds must satisfy 1 <= medium ({medium_from}) < high ({high_from}) <= 100")
    return (F.when(percentile >= high_from, "high")
            .when(percentile >= medium_from, "medium")
            .otherwise("low"))


def with_score_columns(cut_points: Sequence[float], medium_from: int,
                       high_from: int) -> Callable[[DataFrame], DataFrame]:
    """Add score, percentile and bucket to a frame with `probability`."""
    def _apply(df: DataFrame) -> DataFrame:
        percentile = percentile_from_cut_points(F.col("probability"), cut_points)
        return (df.withColumn("score", score_0_100(F.col("probability")))
                  .withColumn("percentile", percentile)
                  .withColumn("bucket", bucket(F.col("percentile"), medium_from, high_from)))
    return _apply


def with_provenance(run_date, name: str, champion, clock, run_id: str) -> Callable[[DataFrame], DataFrame]:
    """Rows of one model's output -> plus when, for which date and by which model version
    and run they were made (the columns every gold score table carries)."""
    def _apply(rows: DataFrame) -> DataFrame:
        return (rows.withColumn("score_date", F.lit(run_date).cast("date"))
                .withColumn("as_of_date", F.lit(run_date).cast("date"))
                .withColumn("model_name", F.lit(name))
                .withColumn("model_version", F.lit(int(champion.version)))
                .withColumn("mlflow_run_id", F.lit(champion.run_id))
                .withColumn("scored_at", F.lit(clock).cast("timestamp"))
                .withColumn("run_id", F.lit(run_id)))
    return _apply
