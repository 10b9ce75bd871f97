"""Drift (PSI), the sufficiency and promotion gates, and the views the suites read."""

from __future__ import annotations

from datetime import date

import pyspark.sql.functions as F
import pytest
from pyspark.sql import types as T

from pipelines.quality import model_gates
from pipelines.quality.drift import bin_shares, drift_outcomes, psi, reference_profile
from pipelines.quality.views import (bronze_events_view, profile_ranges_view, profile_table_after_merge,
                                      scores_view)
from pipelines.xdm.schema import EXPERIENCE_EVENT

THRESHOLDS = {"features": {"warning": 0.1, "error": None}, "score": {"warning": 0.1, "error": 0.25}}


def _population(spark, rows: int, shift: float, seed: int):
    """A normal feature and a uniform score, the feature moved by `shift` standard deviations."""
    return spark.range(rows).select((F.randn(seed) + F.lit(shift)).alias("visits"),
                                    F.rand(seed + 1).alias("probability"))


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift():
    assert psi([0.25] * 4, [0.25] * 4) == 0.0
    small, large = psi([0.25] * 4, [0.3, 0.2, 0.25, 0.25]), psi([0.25] * 4, [0.7, 0.1, 0.1, 0.1])
    assert 0 < small < 0.1 < 0.25 < large
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) > 0.25, "an empty reference bin that fills up is a shift"


def test_the_same_population_shows_no_drift(spark):
    reference = reference_profile(_population(spark, 20_000, 0.0, 1), ["visits", "probability"], bins=10)
    assert len(reference["visits"]["edges"]) == 9
    assert sum(reference["visits"]["shares"]) == pytest.approx(1.0)
    outcomes = drift_outcomes(reference, [_population(spark, 20_000, 0.0, 2)], THRESHOLDS, "probability")
    assert all(o.success for o in outcomes)
    assert all(float(o.observed.split()[-1]) < 0.02 for o in outcomes)


def test_a_shifted_feature_warns_and_a_shifted_score_blocks(spark):
    reference = reference_profile(_population(spark, 20_000, 0.0, 1), ["visits", "probability"], bins=10)
    tonight = _population(spark, 20_000, 1.0, 3).withColumn("probability", F.col("probability") ** 3)
    by_check = {o.check: o for o in drift_outcomes(reference, [tonight], THRESHOLDS, "probability")}
    visits, score = by_check["psi_visits"], by_check["psi_probability"]
    assert (visits.success, visits.severity, visits.blocks) == (False, "warning", False)
    assert (score.success, score.severity, score.blocks) == (False, "error", True)
    assert float(score.observed.split()[-1]) > 0.25


def test_a_feature_that_grows_with_the_calendar_is_left_out_of_drift(spark):
    reference = reference_profile(_population(spark, 2_000, 0.0, 1), ["visits", "probability"], bins=10)
    older = _population(spark, 2_000, 3.0, 3)   # everyone's tenure moved on
    outcomes = drift_outcomes(reference, [older], {**THRESHOLDS, "calendar_features": ["visits"]}, "probability")
    assert [o.check for o in outcomes] == ["psi_probability"]


def test_tied_values_collapse_bins_and_every_row_lands_in_one(spark):
    mostly_zero = spark.createDataFrame([(0.0,)] * 90 + [(1.0,)] * 6 + [(5.0,)] * 4, ["carts"])
    reference = reference_profile(mostly_zero, ["carts"], bins=10)
    # Every decile is 0, so the bins are "none" and "some".
    assert reference["carts"]["edges"] == [0.0]
    assert reference["carts"]["shares"] == pytest.approx([0.9, 0.1])
    assert bin_shares(mostly_zero, {"carts": []}) == {"carts": [1.0]}


SPLITS = {"train": {1.0: 800, 0.0: 5000}, "holdout": {1.0: 600, 0.0: 1500}}


def _sufficiency(counts=SPLITS, first=date(2025, 1, 1), last=date(2026, 5, 31)):
    return model_gates.sufficiency(counts, 500, first, last, first_as_of=date(2026, 1, 2),
                                   run_date=date(2026, 6, 1), min_history_days=30, max_staleness_days=3)


def test_enough_labels_and_history_allow_training():
    decision = _sufficiency()
    assert decision.allowed and decision.reason == ""
    assert "train: 800 positive / 5000 negative" in decision.observed


@pytest.mark.parametrize("kwargs,reason", [
    ({"counts": {"train": {1.0: 499, 0.0: 5000}, "holdout": SPLITS["holdout"]}},
     "the train split has 499 positive and 5000 negative labels (at least 500 of each"),
    ({"counts": {"train": SPLITS["train"], "holdout": {1.0: 600}}},
     "the holdout split has 600 positive and 0 negative"),
    ({"first": date(2025, 12, 15)}, "events start on 2025-12-15, after 2025-12-03"),
    ({"last": date(2026, 5, 20)}, "events end on 2026-05-20, before 2026-05-29"),
    ({"first": None, "last": None}, "there are no events"),
])
def test_too_few_labels_or_too_short_a_history_refuse_training(kwargs, reason):
    decision = _sufficiency(**kwargs)
    assert not decision.allowed
    assert reason in decision.reason


@pytest.mark.parametrize("new,champion,allowed,reason", [
    (0.80, None, True, ""),
    (0.64, None, False, "holdout AUC 0.640 < 0.65"),
    (0.80, 0.79, True, ""),
    (0.80, 0.80, True, ""),
    (0.78, 0.80, False, "holdout AUC 0.780 is worse than the champion's 0.800 on the same holdout"),
    (0.60, 0.80, False, "holdout AUC 0.600 < 0.65; holdout AUC 0.600 is worse than the champion's"),
])
def test_promotion_needs_the_minimum_auc_and_no_loss_against_the_champion(new, champion, allowed, reason):
    decision = model_gates.promotion(new, champion, min_auc=0.65, max_auc_drop=0.0)
    assert decision.allowed is allowed
    assert decision.reason.startswith(reason) and bool(reason) is not allowed


def test_a_tolerated_drop_against_the_champion_still_promotes():
    assert model_gates.promotion(0.79, 0.80, min_auc=0.65, max_auc_drop=0.02).allowed


@pytest.mark.parametrize("mae, ratio, champion_mae, allowed, reason", [
    (10.0, 1.2, None, True, ""),
    (10.0, 1.2, 10.0, True, ""),
    (10.0, 1.6, None, False, "predicted/actual total 1.600 is outside 1 +- 0.5"),
    (10.0, float("inf"), None, False, "predicted/actual total inf is outside"),
    (11.0, 0.9, 10.0, False, "holdout MAE 11.000 is worse than the champion's 10.000 on the same holdout"),
])
def test_a_value_model_is_promoted_when_its_total_is_close_and_it_beats_the_champion(mae, ratio, champion_mae,
                                                                                    allowed, reason):
    decision = model_gates.value_promotion(mae, ratio, champion_mae, max_total_error=0.5, max_mae_increase=0.0)
    assert decision.allowed is allowed
    assert decision.reason.startswith(reason) and bool(reason) is not allowed


def test_a_value_fit_needs_enough_repeat_buyers():
    assert model_gates.value_sufficiency(1000, 500, 500).allowed
    refused = model_gates.value_sufficiency(1000, 499, 500)
    assert not refused.allowed and refused.reason == "499 repeat buyers (at least 500 are needed)"


CDNOW_FIT = {"bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
             "gamma_gamma": {"p": 6.25, "q": 3.74, "gamma": 15.44}}


@pytest.mark.parametrize("change, reason", [
    ({}, ""),
    ({"gamma_gamma": {"p": 6.25, "q": 0.9, "gamma": 15.44}}, "the mean spend does not exist"),
    ({"bgnbd": {"r": 2e4, "alpha": 4.414, "a": 0.793, "b": 2.426}}, "bgnbd.r = 2e+04 is not a positive number"),
    ({"bgnbd": {"r": 0.243, "alpha": 0.1, "a": 0.793, "b": 2.426}}, "exceeds one a day"),
    ({"bgnbd": {"r": float("nan"), "alpha": 4.414, "a": 0.793, "b": 2.426}}, "bgnbd.r = nan"),
    # Pareto/NBD on CDNOW (Fader, Hardie and Lee 2005, the note), then with a degenerate lifetime shape.
    ({"counting_model": "pareto_nbd", "pareto_nbd": {"r": 0.553, "alpha": 10.58, "s": 0.606, "beta": 11.66}}, ""),
    ({"counting_model": "pareto_nbd", "pareto_nbd": {"r": 0.553, "alpha": 10.58, "s": 3e4, "beta": 11.66}},
     "pareto_nbd.s = 3e+04 is not a positive number below 1e4"),
    ({"counting_model": "pareto_nbd", "pareto_nbd": {"r": 0.553, "alpha": 10.58, "s": 0.606, "beta": -1.0}},
     "pareto_nbd.beta = -1 is not a finite positive number"),
])
def test_a_lifetime_value_refit_is_used_only_with_plausible_parameters(change, reason):
    decision = model_gates.value_refit({**CDNOW_FIT, **change})
    assert decision.allowed == (not reason)
    assert reason in decision.reason


def test_the_events_view_names_the_first_bad_currency_and_unknown_namespace(spark):
    bronze = T.StructType(EXPERIENCE_EVENT.fields + [T.StructField("primary_id", T.StringType())])
    item = {"priceTotal": 3.0, "quantity": 2, "currencyCode": "EUR"}
    rows = [
        {"_id": "good", "identityMap": {"ECID": [{"id": "1"}]},
         "commerce": {"order": {"priceTotal": 6.0, "currencyCode": "EUR", "payments": [{"currencyCode": "EUR"}]}},
         "productListItems": [item]},
        {"_id": "bad", "identityMap": {"ECID": [{"id": "2"}], "Fax": [{"id": "3"}]},
         "commerce": {"order": {"currencyCode": "EUR", "payments": [{"currencyCode": "eur"}]}},
         "productListItems": [dict(item, currencyCode="ZZZ", priceTotal=-1.0), dict(item, quantity=0)]},
        {"_id": "bare"},
    ]
    view = spark.createDataFrame(rows, bronze).transform(bronze_events_view(["EUR", "USD"], ["ECID", "CRMID"]))
    got = {r["_id"]: r for r in view.collect()}
    assert (got["good"]["unknown_currency_code"], got["good"]["unknown_identity_namespace"]) == (None, None)
    assert (got["bad"]["unknown_currency_code"], got["bad"]["unknown_identity_namespace"]) == ("ZZZ", "Fax")
    assert (got["bad"]["min_item_price"], got["bad"]["min_item_quantity"]) == (-1.0, 0)
    assert (got["bare"]["unknown_currency_code"], got["bare"]["min_item_price"]) == (None, None)


def test_scores_a_model_should_not_have_given_are_marked_ineligible(spark):
    scores = spark.createDataFrame([("p1", "convert", 0.5), ("p2", "convert", 0.1), ("p2", "churn", 0.4)],
                                   ["person_id", "model_name", "probability"])
    # p2 may be scored for convert but not for churn (no recent purchase).
    eligible = spark.createDataFrame([("p1", "convert"), ("p2", "convert")], ["person_id", "model_name"])
    marked = {(r["model_name"], r["person_id"]): (r["ineligible_person"], r["person_model"])
              for r in scores.transform(scores_view(eligible)).collect()}
    assert marked == {("convert", "p1"): (None, "convert p1"), ("convert", "p2"): (None, "convert p2"),
                      ("churn", "p2"): ("p2", "churn p2")}


def test_the_profile_range_view_names_the_first_value_out_of_range(spark):
    rows = spark.createDataFrame([("a", 0.5, 1.5, 50, 101, 10, 0), ("b", 0.5, None, 50, None, 10, None)],
                                 "person_id string, convert_probability double, churn_probability double, "
                                 "convert_score int, churn_score int, convert_percentile int, churn_percentile int")
    got = {r["person_id"]: (r["probability_out_of_range"], r["score_out_of_range"], r["percentile_out_of_range"])
           for r in rows.transform(profile_ranges_view(["convert", "churn"])).collect()}
    # Nulls are models that did not score the person, not values out of range.
    assert got == {"a": (1.5, 101.0, 0.0), "b": (None, None, None)}


def test_the_profile_view_is_the_table_the_merge_would_leave(spark):
    current = spark.createDataFrame(
        [("a", "2026-05-01", 0.1), ("b", "2026-06-02", 0.2), ("c", "2026-05-01", 0.3)],
        ["person_id", "score_date", "p"])
    incoming = spark.createDataFrame(
        [("a", "2026-06-01", 0.9), ("b", "2026-06-01", 0.8), ("d", "2026-06-01", 0.7), ("d", "2026-06-01", 0.6)],
        ["person_id", "score_date", "p"])
    after = incoming.transform(profile_table_after_merge(current, "person_id", "score_date"))
    rows = sorted((r["person_id"], r["p"]) for r in after.collect())
    # a: newer date wins; b: an older date never replaces; c: untouched; d: duplicates stay visible
    assert rows == [("a", 0.9), ("b", 0.2), ("c", 0.3), ("d", 0.6), ("d", 0.7)]


@pytest.mark.parametrize("observed, value", [
    ("PSI 0.1190", 0.119),
    ("PSI 1.9677; skipped tonight: its champion was trained on the latest snapshots and still drifts", 1.9677),
    ("PSI inf; retrained tonight, then scored again", float("inf")),
])
def test_the_report_reads_the_psi_of_a_drift_outcome_whatever_note_follows(observed, value):
    from pipelines.ops.report import psi_observed

    assert psi_observed(observed) == value
