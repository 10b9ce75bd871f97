"""The models of how many purchases a buyer makes next, beside BG/NBD: each reads the same
per-person summaries (x, t_x, T) and gives P(alive) and the expected purchases over a
horizon. Lifetime value fits every one named in conf and keeps the one whose value ranks
best on the holdout (pipelines/models/training/lifetime_value.py).

    bgnbd       drop-out after each repeat purchase ~ Beta(a, b)          (FHL 2005)
    mbgnbd      the same, and a drop-out chance right after the first one (Batislam,
                Denizel and Filiztekin 2007, Modeling and Prediction of Cohort Data)
    pareto_nbd  a lifetime in continuous time ~ Exponential(mu), mu ~ Gamma(s, beta)
                (Schmittlein, Morrison and Colombo 1987; the likelihood as written in
                Fader, Hardie and Lee 2005, A Note on Implementing the Pareto/NBD Model)

BG/NBD lets a buyer leave only at a purchase, so someone who bought once never leaves;
MBG/NBD lets them leave after the first too; Pareto/NBD lets anyone leave at any time,
which fits a base where people drift away whether or not they bought lately.

MBG/NBD and Pareto/NBD are fitted by BFGS on numerical gradients (no analytic gradient is
kept for them); Pareto/NBD's hypergeometric terms are computed once per distinct (x, t)
pair, not per tuple, which is what makes its likelihood as cheap as MBG/NBD's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

from pipelines.models.lifetime_value import BgNbd, GammaGamma, fit_bgnbd

# Both optimisers work on log-parameters and the mean log-likelihood per person. BFGS stops
# when no central-difference gradient component exceeds 1e-7 (or, at float64's limit, 1e-6);
# the simplex, the fallback, when steps and improvements are this small. Either way the
# parameters agree to far better than 3 digits.
_QUASI_NEWTON = {"gtol": 1e-7, "maxiter": 2_000}
_FLAT_ENOUGH = 1e-6
_SIMPLEX = {"xatol": 1e-7, "fatol": 1e-11, "maxiter": 8_000, "maxfev": 16_000}


@dataclass(frozen=True)
class MbgNbd:
    """BG/NBD where a buyer may also drop out right after the first purchase."""
    r: float
    alpha: float
    a: float
    b: float
    name: ClassVar[str] = "mbgnbd"

    def _log_odds_gone(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """log of P(left after the last purchase) / P(still buying, unseen), up to the common factor."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        return np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))

    def log_likelihood(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        common = (gammaln(r + x) - gammaln(r) + r * np.log(alpha)
                  + gammaln(a + b) + gammaln(b + x + 1) - gammaln(b) - gammaln(a + b + x + 1)
                  - (r + x) * np.log(alpha + T))
        return common + np.logaddexp(0.0, self._log_odds_gone(x, t_x, T))

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(self._log_odds_gone(x, t_x, T)))

    def expected_purchases(self, horizon: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = horizon / (alpha + T + horizon)
        body = 1 - ((alpha + T) / (alpha + T + horizon)) ** (r + x) * hyp2f1(r + x, b + x + 1, a + b + x, z)
        return (a + b + x) / (a - 1) * body * self.p_alive(x, t_x, T)


@dataclass(frozen=True)
class ParetoNbd:
    """Purchase rate ~ Gamma(r, alpha) while alive; lifetime ~ Exponential(mu), mu ~ Gamma(s, beta)."""
    r: float
    alpha: float
    s: float
    beta: float
    name: ClassVar[str] = "pareto_nbd"

    def hypergeometric(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The 2F1 term of A0 at time t (t_x or T), on the larger of alpha and beta's side."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        rsx = r + s + x
        if alpha >= beta:
            return hyp2f1(rsx, s + 1.0, rsx + 1.0, (alpha - beta) / (alpha + t))
        return hyp2f1(rsx, r + x, rsx + 1.0, (beta - alpha) / (beta + t))

    def log_a0(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, hyp: tuple | None = None) -> np.ndarray:
        """log A0, the weight of "left at some time between t_x and T" in the likelihood;
        `hyp`: the 2F1 terms at t_x and at T when already computed."""
        at_last, at_end = hyp or (self.hypergeometric(x, t_x), self.hypergeometric(x, T))
        scale = max(self.alpha, self.beta)
        rsx = self.r + self.s + x
        last = np.log(at_last) - rsx * np.log(scale + t_x)
        end = np.log(at_end) - rsx * np.log(scale + T)
        # A buyer whose last purchase is at T has no time to have left unseen: A0 = 0, log -inf.
        with np.errstate(divide="ignore"):
            return last + np.log1p(-np.exp(end - last))

    def _log_odds_gone(self, x, t_x, T, hyp: tuple | None = None) -> np.ndarray:
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        return (np.log(s) - np.log(r + s + x) + (r + x) * np.log(alpha + T) + s * np.log(beta + T)
                + self.log_a0(x, t_x, T, hyp))

    def log_likelihood(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, hyp: tuple | None = None) -> np.ndarray:
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        common = (gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
                  - (r + x) * np.log(alpha + T) - s * np.log(beta + T))
        return common + np.logaddexp(0.0, self._log_odds_gone(x, t_x, T, hyp))

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(self._log_odds_gone(x, t_x, T)))

    def expected_purchases(self, horizon: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """(r + x)(beta + T) / ((alpha + T)(s - 1)) [1 - ((beta + T) / (beta + T + h))^(s - 1)] P(alive)."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        if abs(s - 1.0) < 1e-9:   # the limit as s -> 1
            lasting = np.log((beta + T + horizon) / (beta + T))
        else:
            lasting = (1 - ((beta + T) / (beta + T + horizon)) ** (s - 1)) / (s - 1)
        return (r + x) * (beta + T) / (alpha + T) * lasting * self.p_alive(x, t_x, T)


CountingModel = BgNbd | MbgNbd | ParetoNbd
COUNTING_MODELS: dict[str, type] = {model.name: model for model in (BgNbd, MbgNbd, ParetoNbd)}


class _Pairs:
    """The distinct (x, t) pairs of the tuples: x and t take a few hundred values each, so
    the pairs are far fewer than the tuples, and Pareto/NBD's 2F1 is computed per pair."""

    def __init__(self, x: np.ndarray, t: np.ndarray):
        pairs, index = np.unique(np.stack([x, t], axis=1), axis=0, return_inverse=True)
        self.x, self.t, self.index = pairs[:, 0], pairs[:, 1], index.ravel()

    def hypergeometric(self, model: ParetoNbd) -> np.ndarray:
        return model.hypergeometric(self.x, self.t)[self.index]


def _mean_negative(kind: type, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], float]:
    x, t_x, T = data["x"], data["t_x"], data["T"]
    weight = data.get("weight", np.ones_like(x))
    people = float(weight.sum())
    pairs = (_Pairs(x, t_x), _Pairs(x, T)) if kind is ParetoNbd else None

    def _objective(log_params: np.ndarray) -> float:
        model = kind(*np.exp(log_params))
        with np.errstate(all="ignore"):
            if pairs:
                ll = model.log_likelihood(x, t_x, T, hyp=tuple(p.hypergeometric(model) for p in pairs))
            else:
                ll = model.log_likelihood(x, t_x, T)
        value = -(weight @ ll) / people
        return float(value) if np.isfinite(value) else np.inf
    return _objective


def _fit_numerically(objective: Callable[[np.ndarray], float], starts: Sequence[Sequence[float]],
                     what: str) -> np.ndarray:
    """BFGS on central-difference gradients (a few hundred evaluations), from each start in
    turn; where it does not converge, a simplex from the same start (several times as many)."""
    results = []
    for start in starts:
        result = minimize(objective, np.log(start), method="BFGS", jac="3-point", options=_QUASI_NEWTON)
        flat = result.status == 2 and np.abs(result.jac).max() < _FLAT_ENOUGH
        if np.isfinite(result.fun) and (result.success or flat):
            return np.exp(result.x)
        result = minimize(objective, np.log(start), method="Nelder-Mead", options=_SIMPLEX)
        if result.success and np.isfinite(result.fun):
            return np.exp(result.x)
        results.append(result)
    raise ValueError(f"{what} fit did not converge from any start: {results[-1].message}")


def fit_counting_model(name: str, data: dict[str, np.ndarray]) -> CountingModel:
    """Maximum likelihood over weighted (x, t_x, T) tuples: BG/NBD with its gradient, the
    others by `_fit_numerically` from rates and lifetimes at the data's time scale, then
    from unit values. Raises ValueError when the fit does not converge or there is nothing
    to fit."""
    if name == BgNbd.name:
        return fit_bgnbd(data)
    kind = COUNTING_MODELS.get(name)
    if kind is None:
        raise ValueError(f"unknown counting model {name!r}; known: {', '.join(COUNTING_MODELS)}")
    x, T = data["x"], data["T"]
    weight = data.get("weight", np.ones_like(x))
    if len(x) == 0 or not (x > 0).any():
        raise ValueError(f"{name} needs people with repeat purchases; there are none")
    mean_T = float(np.average(T, weights=weight))
    starts = [(1.0, mean_T, 1.0, mean_T), (1.0, 1.0, 1.0, 1.0)] if kind is ParetoNbd \
        else [(1.0, mean_T, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0)]
    return kind(*(float(v) for v in _fit_numerically(_mean_negative(kind, data), starts, name)))


def parameters_dict(counts: CountingModel, spend: GammaGamma) -> dict:
    """{"counting_model": name, name: its parameters, "gamma_gamma": ...}."""
    return {"counting_model": counts.name, counts.name: {k: float(v) for k, v in vars(counts).items()},
            "gamma_gamma": {k: float(v) for k, v in vars(spend).items()}}


def parameters_from_dict(data: dict) -> tuple[CountingModel, GammaGamma]:
    """The inverse of `parameters_dict`; parameters logged before there was a choice are BG/NBD's."""
    name = data.get("counting_model", BgNbd.name)
    return COUNTING_MODELS[name](**data[name]), GammaGamma(**data["gamma_gamma"])
