from datetime import date

import numpy as np
import pandas as pd
import pyspark.sql.functions as F
import pytest

from pipelines.core.errors import BadInputError
from pipelines.models.affinity import (future_categories, interaction_strengths, popularity_top, precision_at_k,
                                       top_affinities)
from pipelines.models.training.affinity import AffinityModel
from pipelines.models.segments import assign, describe, fit_segments
from pipelines.quality.model_gates import affinity_promotion, segments_promotion

EVENTS = "person_id string, event_date date, product_views double, cart_adds double, is_purchase boolean, " \
         "categories array<string>"


def _events(spark, rows):
    return spark.createDataFrame(rows, EVENTS)


def test_strength_weighs_kinds_and_halves_every_half_life(spark):
    events = _events(spark, [
        ("p", date(2026, 5, 31), 1.0, 0.0, False, ["Outdoor"]),      # a view yesterday: 1 * 2^(-1/10)
        ("p", date(2026, 5, 22), 0.0, 0.0, True, ["Outdoor", "Kids"]),  # a purchase 10 days ago: 5 * 1/2
        ("p", date(2026, 6, 1), 1.0, 0.0, False, ["Kids"]),           # on the as-of date: not before it
        ("p", date(2025, 1, 1), 1.0, 0.0, False, ["Travel"]),         # outside the look-back
        ("q", date(2026, 5, 30), 0.0, 0.0, False, ["Home"]),          # a page view: no weight
    ])
    rows = events.transform(interaction_strengths(date(2026, 6, 1), {"product_views": 1, "cart_adds": 3,
                                                                     "purchases": 5}, 10.0, 365)).collect()
    got = {(r["person_id"], r["category"]): r["strength"] for r in rows}
    assert got.keys() == {("p", "Outdoor"), ("p", "Kids")}
    assert got[("p", "Outdoor")] == pytest.approx(2 ** -0.1 + 2.5)
    assert got[("p", "Kids")] == pytest.approx(2.5)


def test_unknown_interaction_kinds_are_refused():
    with pytest.raises(ValueError, match="page_views"):
        interaction_strengths(date(2026, 6, 1), {"page_views": 1}, 10.0, 365)


STRENGTHS = [("a", "Outdoor", 6.0), ("a", "Kids", 2.0), ("b", "Outdoor", 1.0), ("c", "Home", 1.0)]


def test_affinity_shrinks_towards_popularity_and_ranks_untouched_popular_categories(spark):
    strengths = spark.createDataFrame(STRENGTHS, "person_id string, category string, strength double")
    top = {(r["person_id"], r["rank"]): (r["category"], r["affinity"])
           for r in top_affinities(strengths, prior_strength=2.0, k=2).collect()}
    popularity = {"Outdoor": 7 / 10, "Kids": 2 / 10, "Home": 1 / 10}
    assert top[("a", 1)] == ("Outdoor", pytest.approx((6 + 2 * popularity["Outdoor"]) / (8 + 2)))
    assert top[("a", 2)] == ("Kids", pytest.approx((2 + 2 * popularity["Kids"]) / 10))
    # b touched only Outdoor; its second category is the most popular one it did not touch.
    assert top[("b", 2)] == ("Kids", pytest.approx(2 * popularity["Kids"] / 3))
    # c's own single interaction is outweighed by the prior on Outdoor.
    assert top[("c", 1)][0] == "Outdoor" and top[("c", 2)][0] == "Home"


def test_the_mlflow_model_gives_the_same_ranking_as_spark(spark):
    strengths = spark.createDataFrame(STRENGTHS, "person_id string, category string, strength double")
    in_spark = sorted((r["person_id"], r["rank"], r["category"], round(r["affinity"], 9))
                      for r in top_affinities(strengths, 2.0, 2).collect())
    frame = pd.DataFrame(STRENGTHS, columns=["person_id", "category", "strength"])
    in_pandas = AffinityModel({"prior_strength": 2.0, "top_k": 2}).predict(None, frame)
    assert sorted((p, int(r), c, round(a, 9)) for p, r, c, a in in_pandas.itertuples(index=False)) == in_spark


def test_precision_at_k_counts_hits_among_people_seen_in_the_window(spark):
    top = spark.createDataFrame([("a", 1, "Outdoor"), ("a", 2, "Kids"), ("b", 1, "Home"), ("b", 2, "Kids"),
                                 ("z", 1, "Home"), ("z", 2, "Kids")], "person_id string, rank int, category string")
    events = _events(spark, [("a", date(2026, 6, 3), 1.0, 0.0, False, ["Kids"]),
                             ("b", date(2026, 6, 4), 0.0, 1.0, False, ["Home", "Kids"]),
                             ("b", date(2026, 7, 9), 1.0, 0.0, False, ["Travel"])])   # after the window
    future = events.transform(future_categories(date(2026, 6, 1), date(2026, 7, 1), {"product_views": 1,
                                                                                      "cart_adds": 3}))
    got = precision_at_k(top, future, 2)
    assert got == {"precision_at_k": pytest.approx(3 / 4), "hit_rate_top1": pytest.approx(1 / 2), "people": 2.0}


def test_popularity_baseline_gives_everyone_the_same_categories(spark):
    strengths = spark.createDataFrame(STRENGTHS, "person_id string, category string, strength double")
    rows = popularity_top(strengths, 1).collect()
    assert {r["person_id"] for r in rows} == {"a", "b", "c"} and {r["category"] for r in rows} == {"Outdoor"}


def test_affinity_gate_needs_a_lift_over_popularity_and_no_loss_to_the_champion():
    assert affinity_promotion(0.5, 0.2, None, 1.0, 0.0).allowed
    refused = affinity_promotion(0.19, 0.2, None, 1.0, 0.0)
    assert not refused.allowed and "popularity" in refused.reason
    worse = affinity_promotion(0.45, 0.2, 0.5, 1.0, 0.0, "champion v1")
    assert not worse.allowed and "champion's 0.500" in worse.reason


SEGMENT_FEATURES = ["days_since_last_purchase", "lifetime_purchases", "avg_order_value"]


def _three_kinds_of_customer(spark, per_kind=60):
    rng = np.random.default_rng(3)
    kinds = [(5.0, 20.0, 150.0), (200.0, 1.0, 30.0), (40.0, 5.0, 60.0)]
    rows = [(f"{i}-{n}", *(float(v * rng.uniform(0.85, 1.15)) for v in centre))
            for i, centre in enumerate(kinds) for n in range(per_kind)]
    return spark.createDataFrame(rows, ["person_id", *SEGMENT_FEATURES])


def test_kmeans_finds_the_planted_segments_and_names_them_from_their_centroids(spark):
    rows = _three_kinds_of_customer(spark)
    model, search = fit_segments(rows, SEGMENT_FEATURES, ["lifetime_purchases"], [2, 3, 4], seed=1)
    best = max(search, key=lambda r: r["silhouette"])
    assert best["k"] == 3 and best["silhouette"] > 0.7
    assigned = rows.transform(assign(model, describe(model, SEGMENT_FEATURES, ["lifetime_purchases"],
                                                     {0: 60, 1: 60, 2: 60})))
    # Every planted kind is one segment, and no segment mixes kinds.
    pairs = assigned.select(F.substring_index("person_id", "-", 1).alias("kind"), "segment_id").distinct()
    assert pairs.count() == 3 and pairs.select("segment_id").distinct().count() == 3
    segments = describe(model, SEGMENT_FEATURES, ["lifetime_purchases"], {0: 70, 1: 60, 2: 50})
    assert [s["segment_id"] for s in segments] == [1, 2, 3] and [s["people"] for s in segments] == [70, 60, 50]
    names = {s["segment_name"] for s in segments}
    assert len(names) == 3
    frequent = next(s for s in segments if s["centroid"]["lifetime_purchases"] > 15)
    # Named by its two most distinctive features.
    assert frequent["segment_name"] == "big baskets, frequent buyers"
    assert frequent["centroid"]["lifetime_purchases"] == pytest.approx(20, rel=0.1)


def test_log_features_must_be_segment_features(spark):
    rows = _three_kinds_of_customer(spark, per_kind=5)
    with pytest.raises(BadInputError, match="tenure_days"):
        fit_segments(rows, SEGMENT_FEATURES, ["tenure_days"], [2], seed=1)


def test_segments_gate_needs_separation_and_no_loss_to_the_champion():
    assert segments_promotion(0.5, None, 0.2, 0.05).allowed
    assert not segments_promotion(0.1, None, 0.2, 0.05).allowed
    worse = segments_promotion(0.4, 0.5, 0.2, 0.05, "champion v2")
    assert not worse.allowed and "champion's 0.500" in worse.reason
