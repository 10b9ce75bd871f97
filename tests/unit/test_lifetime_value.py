"""BG/NBD and Gamma-Gamma against the estimates Fader, Hardie and Lee published for the
CDNOW sample (2,357 customers, weeks), and the per-person summaries Spark computes."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from pipelines.models import lifetime_value
from pipelines.models.lifetime_value import (BgNbd, GammaGamma, actual_value, collect_weighted, compress_for_bgnbd,
                                             compress_for_gamma_gamma, expected_purchases, expected_spend, fit_bgnbd,
                                             bgnbd_log_likelihood, bgnbd_objective, fit_gamma_gamma,
                                             gamma_gamma_log_likelihood, gamma_gamma_objective, holdout_errors,
                                             probability_alive, purchase_summary, with_lifetime_value)
from pipelines.models.counting_models import parameters_dict, parameters_from_dict
from tests.real_data import cdnow_summary


def _significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    """CDNOW summary as shipped by the `lifetimes` package (read as data; its code is not used)."""
    return cdnow_summary()


def test_bgnbd_fit_matches_the_published_cdnow_estimates(cdnow):
    fitted = fit_bgnbd(cdnow)
    # Fader, Hardie and Lee (2005), section 5: r = 0.243, alpha = 4.414, a = 0.793, b = 2.426.
    assert [_significant(v) for v in (fitted.r, fitted.alpha, fitted.a, fitted.b)] == [0.243, 4.41, 0.793, 2.43]
    assert round(fitted.alpha, 3) == 4.414 and round(fitted.b, 3) == 2.426


def test_gamma_gamma_fit_matches_the_published_cdnow_estimates(cdnow):
    fitted = fit_gamma_gamma(cdnow)
    # Fader and Hardie (2013), on the 946 repeat buyers: p = 6.25, q = 3.74, gamma = 15.44.
    assert [_significant(v) for v in (fitted.p, fitted.q, fitted.gamma)] == [6.25, 3.74, 15.4]


def test_the_published_conditional_expectation_is_reproduced(cdnow):
    fitted = fit_bgnbd(cdnow)
    # FHL (2005): a customer with x = 2, t_x = 30.43, T = 38.86 makes 1.226 purchases in the next 39 weeks.
    got = expected_purchases(fitted, 39.0, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert round(float(got[0]), 3) == 1.226


@pytest.mark.parametrize("slice_size", [16_384, 100])
@pytest.mark.parametrize("point", [(0.243, 4.41, 0.793, 2.43), (1.0, 1.0, 1.0, 1.0), (3.0, 0.2, 5.0, 0.6)])
def test_the_fits_gradients_are_those_of_the_likelihoods(cdnow, point, slice_size, monkeypatch):
    """The optimiser trusts the analytic gradients: they must be the likelihoods' own,
    whether the repeat buyers' terms are summed in one slice or in many."""
    monkeypatch.setattr(lifetime_value, "_SLICE", slice_size)
    bgnbd, spend = bgnbd_objective(cdnow), gamma_gamma_objective(cdnow)
    for objective, at in ((bgnbd, np.log(point)), (spend, np.log(point[:3]))):
        numeric = approx_fprime(at, lambda v, f=objective: f(v)[0], 1e-7)
        assert objective(at)[1] == pytest.approx(numeric, rel=1e-4, abs=1e-5)
    repeat = cdnow["x"] > 0
    assert bgnbd(np.log(point))[0] == pytest.approx(
        -np.mean(bgnbd_log_likelihood(BgNbd(*point), cdnow["x"], cdnow["t_x"], cdnow["T"])), rel=1e-12)
    assert spend(np.log(point[:3]))[0] == pytest.approx(-np.mean(gamma_gamma_log_likelihood(
        GammaGamma(*point[:3]), cdnow["x"][repeat], cdnow["mean_spend"][repeat])), rel=1e-12)


def test_fitting_unique_tuples_with_counts_equals_fitting_every_person(cdnow):
    keys = np.stack([cdnow["x"], cdnow["t_x"], cdnow["T"]], axis=1)
    unique, counts = np.unique(keys, axis=0, return_counts=True)
    assert len(unique) < len(keys)
    compressed = fit_bgnbd({"x": unique[:, 0], "t_x": unique[:, 1], "T": unique[:, 2], "weight": counts.astype(float)})
    full = fit_bgnbd(cdnow)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(compressed, name) == pytest.approx(getattr(full, name), rel=1e-5), name


def test_one_time_buyers_are_alive_and_long_silence_means_gone():
    params = BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)
    alive = probability_alive(params, np.array([0.0, 5.0, 5.0]), np.array([0.0, 38.0, 5.0]), np.array([39.0] * 3))
    assert alive[0] == 1.0
    assert alive[1] > 0.8 > 0.5 > alive[2], "a recent buyer is likelier alive than one silent for 34 weeks"
    more = expected_purchases(params, 52.0, np.array([5.0, 5.0]), np.array([38.0, 38.0]), np.array([39.0, 39.0]))
    less = expected_purchases(params, 26.0, np.array([5.0, 5.0]), np.array([38.0, 38.0]), np.array([39.0, 39.0]))
    assert (more > less).all() and (less > 0).all()


def test_expected_spend_shrinks_a_buyer_towards_the_population_mean(cdnow):
    fitted = fit_gamma_gamma(cdnow)
    population = fitted.p * fitted.gamma / (fitted.q - 1)
    spend = expected_spend(fitted, np.array([0.0, 1.0, 50.0]), np.array([np.nan, 100.0, 100.0]))
    assert spend[0] == pytest.approx(population)
    assert population < spend[1] < spend[2] < 100.0


def test_spark_summaries_count_purchase_days_and_average_repeat_spend(spark):
    rows = [("a", date(2026, 1, 1), True, 10.0), ("a", date(2026, 1, 1), True, 5.0),
            ("a", date(2026, 1, 11), True, 30.0), ("a", date(2026, 1, 21), True, 50.0),
            ("a", date(2026, 1, 25), False, 0.0), ("a", date(2026, 2, 1), True, 99.0),
            ("b", date(2026, 1, 15), True, 20.0), ("c", date(2026, 1, 15), False, 0.0)]
    events = spark.createDataFrame(rows, "person_id string, event_date date, is_purchase boolean, revenue double")
    summary = {r["person_id"]: r.asDict() for r in events.transform(purchase_summary(date(2026, 2, 1))).collect()}
    assert set(summary) == {"a", "b"}, "only buyers; the purchase on the as-of date is in the future"
    assert {k: summary["a"][k] for k in ("x", "t_x", "T", "mean_spend")} == {"x": 2.0, "t_x": 20.0, "T": 31.0,
                                                                             "mean_spend": 40.0}
    assert (summary["b"]["x"], summary["b"]["mean_spend"]) == (0.0, None)
    bgnbd = collect_weighted(compress_for_bgnbd(events.transform(purchase_summary(date(2026, 2, 1)))),
                             ["x", "t_x", "T"])
    assert sorted(zip(bgnbd["x"], bgnbd["weight"], strict=True)) == [(0.0, 1.0), (2.0, 1.0)]
    spend = compress_for_gamma_gamma(events.transform(purchase_summary(date(2026, 2, 1)))).collect()
    assert [(r["x"], r["mean_spend"], r["weight"]) for r in spend] == [(2.0, 40.0, 1)]


def test_predictions_in_spark_equal_the_driver_formulas(spark, cdnow):
    bgnbd, spend = fit_bgnbd(cdnow), fit_gamma_gamma(cdnow)
    rows = [(float(x), float(t), float(T), None if x == 0 else float(m))
            for x, t, T, m in zip(cdnow["x"][:200], cdnow["t_x"][:200], cdnow["T"][:200], cdnow["mean_spend"][:200],
                                  strict=True)]
    summary = spark.createDataFrame(rows, "x double, t_x double, T double, mean_spend double")
    scored = summary.transform(with_lifetime_value(bgnbd, spend, 39.0)).collect()
    x = np.array([r["x"] for r in scored])
    t_x, T = np.array([r["t_x"] for r in scored]), np.array([r["T"] for r in scored])
    mean = np.array([np.nan if r["mean_spend"] is None else r["mean_spend"] for r in scored])
    purchases = expected_purchases(bgnbd, 39.0, x, t_x, T)
    assert np.allclose([r["expected_purchases"] for r in scored], purchases)
    assert np.allclose([r["p_alive"] for r in scored], probability_alive(bgnbd, x, t_x, T))
    assert np.allclose([r["expected_value"] for r in scored], purchases * expected_spend(spend, x, mean))


def test_holdout_errors_count_people_who_bought_nothing_as_zero(spark):
    events = spark.createDataFrame(
        [("a", date(2026, 3, 2), True, 30.0), ("a", date(2026, 3, 2), True, 10.0), ("a", date(2026, 3, 9), True, 20.0),
         ("b", date(2026, 3, 31), True, 99.0),    # after the 30-day window
         ("c", date(2026, 2, 28), True, 50.0)],   # before it
        "person_id string, event_date date, is_purchase boolean, revenue double")
    actual = {r["person_id"]: (r["actual_purchases"], r["actual_value"])
              for r in events.transform(actual_value(date(2026, 3, 1), 30)).collect()}
    assert actual == {"a": (2.0, 60.0)}, "two purchase days, all their revenue; nothing outside the window"
    predicted = spark.createDataFrame([("a", 1.0, 50.0), ("b", 0.5, 20.0)],
                                      "person_id string, expected_purchases double, expected_value double")
    errors = holdout_errors(predicted, events.transform(actual_value(date(2026, 3, 1), 30)))
    assert errors["holdout_mae"] == pytest.approx((10.0 + 20.0) / 2)
    assert errors["holdout_rmse"] == pytest.approx(np.sqrt((100.0 + 400.0) / 2))
    assert errors["holdout_purchases_mae"] == pytest.approx((1.0 + 0.5) / 2)
    assert (errors["holdout_total_predicted"], errors["holdout_total_actual"]) == (70.0, 60.0)
    assert errors["holdout_total_ratio"] == pytest.approx(70.0 / 60.0)


def test_the_registered_model_predicts_what_the_formulas_say(cdnow):
    import pandas as pd

    from pipelines.models.training.lifetime_value import LifetimeValueModel

    bgnbd, spend = fit_bgnbd(cdnow), fit_gamma_gamma(cdnow)
    model = LifetimeValueModel(parameters_dict(bgnbd, spend), 39)
    frame = pd.DataFrame({"x": cdnow["x"][:50], "t_x": cdnow["t_x"][:50], "T": cdnow["T"][:50],
                          "mean_spend": np.where(cdnow["x"][:50] > 0, cdnow["mean_spend"][:50], np.nan)})
    out = model.predict(None, frame)
    x, t_x, T = cdnow["x"][:50], cdnow["t_x"][:50], cdnow["T"][:50]
    purchases = expected_purchases(bgnbd, 39.0, x, t_x, T)
    assert np.allclose(out["expected_purchases"], purchases)
    assert np.allclose(out["expected_value"], purchases * expected_spend(spend, x, frame["mean_spend"].to_numpy()))
    assert parameters_from_dict(parameters_dict(bgnbd, spend)) == (bgnbd, spend)


def test_spend_in_a_large_currency_unit_is_fitted_from_a_start_on_the_datas_scale():
    # Spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, gamma): simulated with mean orders
    # around 100 (a scale the unit start is far from), 4,000 repeat buyers.
    rng = np.random.default_rng(5)
    truth = GammaGamma(p=2.0, q=5.0, gamma=235.0)
    x = rng.integers(1, 8, size=4000).astype(float)
    nu = rng.gamma(truth.q, 1 / truth.gamma, size=x.size)
    mean_spend = np.array([rng.gamma(truth.p, 1 / v, size=int(n)).mean() for v, n in zip(nu, x, strict=True)])
    fitted = fit_gamma_gamma({"x": x, "mean_spend": mean_spend})
    population_mean = truth.p * truth.gamma / (truth.q - 1)
    assert fitted.p * fitted.gamma / (fitted.q - 1) == pytest.approx(population_mean, rel=0.05)
    assert fitted.p == pytest.approx(truth.p, rel=0.15) and fitted.q == pytest.approx(truth.q, rel=0.25)
