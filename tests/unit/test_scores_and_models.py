from datetime import date

import pyspark.sql.functions as F
import pytest

from pipelines.core.columns import count_below
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


def test_count_below_counts_edges_strictly_below_with_exact_double_edges(spark):
    edges = [float("-inf"), -2.5, 1e-05, 0.1, 0.30000000000000004, 1.5e+20, float("nan")]
    values = [None, float("-inf"), -3.0, -2.5, 0.0, 1e-05, 0.1, 0.3, 0.30000000000000004, 2e20, float("inf"),
              float("nan")]
    df = spark.createDataFrame([(v,) for v in values], "v double")
    got = [r["n"] for r in df.select(count_below(F.col("v"), edges).alias("n")).collect()]
    # Spark orders NaN above every number, and above infinity.
    expected = [0] + [sum(1 for e in edges if v > e or (v != v and e == e)) for v in values[1:]]
    assert got == expected == [0, 0, 1, 1, 2, 2, 3, 4, 4, 6, 6, 6]
    assert df.select(count_below(F.col("v"), []).alias("n")).distinct().collect()[0]["n"] == 0


def test_bucket_thresholds_are_checked():
    with pytest.raises(ValueError, match="bucket thresholds"):
        bucket(F.col("p"), 80, 50)


def test_snapshot_plan_keeps_training_labels_before_the_holdout():
    plan = snapshot_plan(date(2026, 11, 27), horizon_days=30, cadence_days=30, snapshots=3)
    assert plan.holdout == date(2026, 10, 28)
    assert plan.training == (date(2026, 7, 30), date(2026, 8, 29), date(2026, 9, 28))
    with pytest.raises(ValueError, match="cadence_days"):
        snapshot_plan(date(2026, 11, 27), horizon_days=30, cadence_days=14, snapshots=3)


def _scored(spark, rows):
    """(probability, label) rows in the shape a fitted classifier leaves them."""
    from pyspark.ml.functions import array_to_vector
    df = spark.createDataFrame(rows, "p double, label double")
    return (df.withColumn("probability", array_to_vector(F.array(1 - F.col("p"), F.col("p"))))
            .withColumn("rawPrediction", F.col("probability")))


def test_gains_put_every_positive_in_the_top_decile_of_a_perfect_ranking(spark):
    from pipelines.models.propensity import cumulative_gains
    rows = [(0.9 + i / 1000, 1.0) for i in range(10)] + [(i / 100, 0.0) for i in range(90)]
    gains = cumulative_gains(_scored(spark, rows))
    assert len(gains) == 10
    assert gains[0]["targeted"] == pytest.approx(0.1) and gains[0]["captured"] == pytest.approx(1.0)
    assert gains[0]["lift"] == pytest.approx(10.0)
    assert gains[-1]["targeted"] == pytest.approx(1.0) and gains[-1]["captured"] == pytest.approx(1.0)


def test_a_random_ranking_has_lift_near_one(spark):
    from pipelines.models.propensity import cumulative_gains
    scored = _scored(spark, [(float(i % 97) / 97, float(i % 5 == 0)) for i in range(5000)])
    assert cumulative_gains(scored)[0]["lift"] == pytest.approx(1.0, abs=0.15)


def test_brier_and_reliability_of_a_calibrated_and_an_overconfident_model(spark):
    from pipelines.models.propensity import reliability_curve
    # Calibrated: people given 0.2 buy 2 times in 10, people given 0.8 buy 8 times in 10.
    calibrated = [(0.2, float(i < 2)) for i in range(10)] + [(0.8, float(i < 8)) for i in range(10)]
    curve = reliability_curve(_scored(spark, calibrated))
    assert [(b["bin"], b["predicted"], b["observed"], b["people"]) for b in curve] == [
        (2, pytest.approx(0.2), pytest.approx(0.2), 10), (8, pytest.approx(0.8), pytest.approx(0.8), 10)]
    from pipelines.models.propensity import evaluate
    metrics = evaluate(_scored(spark, calibrated))
    assert metrics["holdout_brier"] == pytest.approx(0.16)
    assert metrics["holdout_positive_rate"] == pytest.approx(0.5) and metrics["holdout_rows"] == 20
    overconfident = [(0.0 if p == 0.2 else 1.0, label) for p, label in calibrated]
    assert evaluate(_scored(spark, overconfident))["holdout_brier"] > metrics["holdout_brier"]


def test_the_search_grid_swaps_values_into_the_configured_settings():
    from pipelines.models.propensity import parameter_grid
    base = {"max_iter": 30, "max_depth": 4, "step_size": 0.1}
    grid = parameter_grid(base, {"max_depth": [3, 5], "step_size": [0.1, 0.3]})
    assert [(c["max_depth"], c["step_size"]) for c in grid] == [(3, 0.1), (3, 0.3), (5, 0.1), (5, 0.3)]
    assert all(c["max_iter"] == 30 for c in grid)
    assert parameter_grid(base, None) == [base]
    with pytest.raises(ValueError, match=r"settings the model does not have: \['depth'\]"):
        parameter_grid(base, {"depth": [3]})
    with pytest.raises(ValueError, match="search.max_depth must be a non-empty list"):
        parameter_grid(base, {"max_depth": 3})


def test_the_search_judges_candidates_on_the_later_snapshot(spark):
    from pipelines.models.propensity import classifier_pipeline, time_based_search
    # The label is a XOR b: no sum of one-feature trees ranks it, two-level trees can. Uneven
    # cell counts give the first split a gain, so the deeper trees find the interaction.
    cells = {(0, 0): 40, (0, 1): 20, (1, 0): 40, (1, 1): 40}
    rows = [(float(a), float(b), float(a != b)) for (a, b), n in cells.items() for _ in range(n)]
    frame = spark.createDataFrame(rows, "a double, b double, label double")
    base = {"max_iter": 5, "max_depth": 1, "step_size": 0.5, "subsampling_rate": 1.0}
    best, results = time_based_search(frame, frame, [base, {**base, "max_depth": 2}],
                                      lambda rows, params: classifier_pipeline(["a", "b"], params, 1).fit(rows))
    assert [r["params"]["max_depth"] for r in results] == [1, 2]
    assert results[1]["validation_auc_roc"] > results[0]["validation_auc_roc"]
    assert best["max_depth"] == 2


def test_only_a_missing_model_or_alias_reads_as_no_champion(monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2 as codes

    from pipelines.models import registry

    def failing(error_code, message):
        # A client that answers with the error, and touches no tracking store.
        class Client:
            def get_model_version_by_alias(self, name, alias):
                raise MlflowException(message, error_code=error_code)
        return Client

    for code, message in ((codes.RESOURCE_DOES_NOT_EXIST, "Registered Model with name=m not found"),
                          (codes.INVALID_PARAMETER_VALUE, "Registered model alias champion not found.")):
        monkeypatch.setattr(registry, "MlflowClient", failing(code, message))
        assert registry.champion("m") is None
    monkeypatch.setattr(registry, "MlflowClient", failing(codes.TEMPORARILY_UNAVAILABLE, "503 Service Unavailable"))
    with pytest.raises(MlflowException, match="503"):
        registry.champion("m")


@pytest.mark.parametrize("aucs, chosen", [
    ({"estimator": 0.80, "baseline": 0.79, "customer_base": 0.70}, "estimator"),
    ({"estimator": 0.66, "baseline": 0.69, "customer_base": 0.70}, "customer_base"),
    ({"estimator": 0.70, "baseline": 0.70}, "baseline"),
    ({"estimator": 0.70, "baseline": 0.70, "customer_base": 0.70}, "customer_base"),
])
def test_the_best_candidate_is_registered_and_a_tie_goes_to_the_simpler(aucs, chosen):
    from pipelines.models.training.classifier import best_candidate

    assert best_candidate(aucs) == chosen
