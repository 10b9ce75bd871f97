from datetime import date

import pyspark.sql.functions as F
import pytest

from pipelines.models.propensity import snapshot_plan
from pipelines.scoring.scores import (bucket, percentile_cut_points, percentile_from_cut_points,
                                      with_score_columns)


def test_percentiles_run_from_1_to_100_and_buckets_follow_them(spark):
    scores = spark.range(1000).select((F.col("id") / 1000.0).alias("probability"))
    cuts = percentile_cut_points(scores, "probability")
    assert len(cuts) == 99
    rows = scores.transform(with_score_columns(cuts, 50, 80))
    stats = rows.agg(F.min("percentile"), F.max("percentile"), F.countDistinct("percentile")).first()
    assert tuple(stats) == (1, 100, 100)
    by_bucket = {r["bucket"]: r["count"] for r in rows.groupBy("bucket").count().collect()}
    assert by_bucket == {"low": 490, "medium": 300, "high": 210}


def test_equal_probabilities_share_a_percentile_and_scores_round(spark):
    df = spark.createDataFrame([(0.2,), (0.2,), (0.2,), (0.905,)], ["probability"])
    rows = df.transform(with_score_columns([0.1, 0.2, 0.5], 2, 3)).orderBy("probability").collect()
    assert [r["percentile"] for r in rows] == [2, 2, 2, 4]
    assert [r["score"] for r in rows] == [20, 20, 20, 91]
    assert [r["bucket"] for r in rows] == ["medium", "medium", "medium", "high"]


def test_no_cut_points_means_no_percentile(spark):
    df = spark.createDataFrame([(0.5,)], ["probability"])
    assert df.select(percentile_from_cut_points(F.col("probability"), []).alias("p")).first()["p"] is None


def test_bucket_thresholds_are_checked():
    with pytest.raises(ValueError, match="bucket thresholds"):
        bucket(F.col("p"), 80, 50)


def test_snapshot_plan_keeps_training_labels_before_the_holdout():
    plan = snapshot_plan(date(2026, 11, 27), horizon_days=30, cadence_days=30, snapshots=3)
    assert plan.holdout == date(2026, 10, 28)
    assert plan.training == (date(2026, 7, 30), date(2026, 8, 29), date(2026, 9, 28))
    with pytest.raises(ValueError, match="cadence_days"):
        snapshot_plan(date(2026, 11, 27), horizon_days=30, cadence_days=14, snapshots=3)
