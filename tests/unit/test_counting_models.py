"""MBG/NBD and Pareto/NBD: the published CDNOW estimates where there are some, the
parameters they were drawn with on simulated buyers, and the shapes of their answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.models.counting_models import (COUNTING_MODELS, MbgNbd, ParetoNbd, _mean_negative,
                                              fit_counting_model, parameters_dict, parameters_from_dict)
from pipelines.models.lifetime_value import BgNbd, GammaGamma
from tests.real_data import cdnow_summary


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    """CDNOW summary in weeks as shipped by the `lifetimes` package."""
    return cdnow_summary()


def _significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def test_pareto_nbd_fit_matches_the_published_cdnow_estimates(cdnow):
    fitted = fit_counting_model("pareto_nbd", cdnow)
    # Fader, Hardie and Lee (2005), A Note on Implementing the Pareto/NBD Model in MATLAB:
    # r = 0.5534, alpha = 10.5802, s = 0.6061, beta = 11.6562, log-likelihood -9594.98.
    assert [_significant(v) for v in (fitted.r, fitted.alpha, fitted.s, fitted.beta)] == [0.553, 10.6, 0.606, 11.7]
    log_likelihood = fitted.log_likelihood(cdnow["x"], cdnow["t_x"], cdnow["T"]).sum()
    assert round(log_likelihood, 1) == -9595.0


def test_mbgnbd_fit_and_predictions_match_an_independent_implementation(cdnow):
    """No MBG/NBD estimates on CDNOW are published; `lifetimes` (the test extra) fits the same
    likelihood by its own code, so the two must agree."""
    from lifetimes import ModifiedBetaGeoFitter

    fitted = fit_counting_model("mbgnbd", cdnow)
    frame = pd.DataFrame(cdnow)
    reference = ModifiedBetaGeoFitter().fit(frame["x"], frame["t_x"], frame["T"]).params_
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fitted, name) == pytest.approx(reference[name], rel=1e-4), name
    at = (np.array([2.0]), np.array([30.43]), np.array([38.86]))
    other = MbgNbd(*(float(reference[name]) for name in ("r", "alpha", "a", "b")))
    assert fitted.expected_purchases(39.0, *at) == pytest.approx(other.expected_purchases(39.0, *at), rel=1e-4)
    model = ModifiedBetaGeoFitter()
    model.params_ = reference
    assert fitted.expected_purchases(39.0, *at)[0] == pytest.approx(
        float(model.conditional_expected_number_of_purchases_up_to_time(39.0, 2.0, 30.43, 38.86)), rel=1e-4)
    assert fitted.p_alive(*at)[0] == pytest.approx(float(np.ravel(model.conditional_probability_alive(
        2.0, 30.43, 38.86))[0]), rel=1e-4)


def _simulate_pareto_nbd(truth: ParetoNbd, people: int, days: float, seed: int) -> dict[str, np.ndarray]:
    """Buyers who purchase at Poisson rate lambda ~ Gamma(r, alpha) until an exponential
    lifetime with rate mu ~ Gamma(s, beta), observed for `days` after their first purchase."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(truth.r, 1 / truth.alpha, people)
    lifetime = rng.exponential(1 / rng.gamma(truth.s, 1 / truth.beta, people))
    T = rng.uniform(days / 4, days, people).round()
    observed = np.minimum(lifetime, T)
    x = rng.poisson(rate * observed).astype(float)
    # Given x purchases in (0, observed], their times are uniform; t_x is the latest.
    t_x = np.where(x > 0, observed * rng.beta(np.maximum(x, 1), 1), 0.0)
    return {"x": x, "t_x": t_x, "T": T}


def test_pareto_nbd_recovers_the_parameters_it_was_drawn_with():
    truth = ParetoNbd(r=0.8, alpha=40.0, s=0.5, beta=60.0)
    data = _simulate_pareto_nbd(truth, 20_000, 365.0, seed=3)
    fitted = fit_counting_model("pareto_nbd", data)
    assert fitted.r / fitted.alpha == pytest.approx(truth.r / truth.alpha, rel=0.05), "the mean purchase rate"
    assert fitted.s / fitted.beta == pytest.approx(truth.s / truth.beta, rel=0.2), "the mean drop-out rate"
    # On buyers who leave in continuous time, Pareto/NBD is likelier than BG/NBD.
    bgnbd = fit_counting_model("bgnbd", data)
    assert (fitted.log_likelihood(data["x"], data["t_x"], data["T"]).sum()
            > bgnbd.log_likelihood(data["x"], data["t_x"], data["T"]).sum())


def test_the_fits_read_tuples_with_counts_as_every_person(cdnow):
    """The nightly fits unique (x, t_x, T) with counts; Pareto/NBD's 2F1 terms are computed
    once per distinct (x, t) pair. Both must give what a fit over every person gives."""
    keys = np.stack([cdnow["x"], cdnow["t_x"], cdnow["T"]], axis=1)
    unique, counts = np.unique(keys, axis=0, return_counts=True)
    compressed = {"x": unique[:, 0], "t_x": unique[:, 1], "T": unique[:, 2], "weight": counts.astype(float)}
    for name in ("mbgnbd", "pareto_nbd"):
        point = np.log([0.5, 8.0, 0.7, 9.0])
        assert _mean_negative(COUNTING_MODELS[name], compressed)(point) == pytest.approx(
            -np.mean(COUNTING_MODELS[name](*np.exp(point)).log_likelihood(cdnow["x"], cdnow["t_x"], cdnow["T"])),
            rel=1e-12)
        full, weighted = fit_counting_model(name, cdnow), fit_counting_model(name, compressed)
        for field in vars(full):
            assert getattr(weighted, field) == pytest.approx(getattr(full, field), rel=1e-4), (name, field)


@pytest.mark.parametrize("model", [MbgNbd(r=0.525, alpha=6.18, a=0.891, b=1.61),
                                   ParetoNbd(r=0.553, alpha=10.58, s=0.606, beta=11.66)])
def test_one_time_buyers_may_be_gone_and_long_silence_means_gone(model):
    """Unlike BG/NBD, which holds a buyer who never came back alive for ever."""
    alive = model.p_alive(np.array([0.0, 0.0, 5.0, 5.0]), np.array([0.0, 0.0, 38.0, 5.0]),
                          np.array([2.0, 39.0, 39.0, 39.0]))
    assert 1.0 > alive[0] > alive[1], "a first buyer silent for 39 weeks is less likely there than after 2"
    assert alive[2] > 0.8 > 0.5 > alive[3], "a recent buyer is likelier alive than one silent for 34 weeks"
    at = (np.array([5.0, 0.0]), np.array([38.0, 0.0]), np.array([39.0, 39.0]))
    more, less = model.expected_purchases(52.0, *at), model.expected_purchases(26.0, *at)
    assert (more > less).all() and (less > 0).all()
    assert BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426).p_alive(*at)[1] == 1.0


def test_parameters_round_trip_and_name_their_counting_model():
    spend = GammaGamma(p=6.25, q=3.74, gamma=15.44)
    for counts in (BgNbd(0.243, 4.414, 0.793, 2.426), MbgNbd(0.525, 6.18, 0.891, 1.61),
                   ParetoNbd(0.553, 10.58, 0.606, 11.66)):
        logged = parameters_dict(counts, spend)
        assert logged["counting_model"] == counts.name
        assert parameters_from_dict(logged) == (counts, spend)
    # Versions logged before there was a choice hold BG/NBD's parameters alone.
    assert parameters_from_dict({"bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
                                 "gamma_gamma": vars(spend)})[0] == BgNbd(0.243, 4.414, 0.793, 2.426)


def test_an_unknown_counting_model_is_named():
    with pytest.raises(ValueError, match="unknown counting model 'pareto'; known: bgnbd, mbgnbd, pareto_nbd"):
        fit_counting_model("pareto", {"x": np.array([1.0]), "t_x": np.array([1.0]), "T": np.array([2.0])})
