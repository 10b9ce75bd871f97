"""Probabilistic lifetime value: BG/NBD for how many purchases, Gamma-Gamma for their value.

Both models need only per-person summaries: x (repeat purchases), t_x (time of the last
purchase after the first), T (time from the first purchase to the as-of date) and the
mean value of the repeat purchases. Spark computes them and compresses them to unique
tuples with counts; the likelihood is then fitted on the driver over those tuples, so a
fit costs the same for a million people as for a thousand. Predictions go back to Spark.

    summary = events.transform(purchase_summary(as_of))
    bgnbd = fit_bgnbd(collect_weighted(compress_for_bgnbd(summary), ["x", "t_x", "T"]))

References: Fader, Hardie and Lee (2005), "Counting Your Customers" the Easy Way: An
Alternative to the Pareto/NBD Model, Marketing Science 24(2); Fader and Hardie (2013),
The Gamma-Gamma Model of Monetary Value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Callable, ClassVar, Sequence

import numpy as np
import pyspark.sql.functions as F
from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, StructField, StructType
from scipy.optimize import minimize
from scipy.special import digamma, gammaln

from pipelines.core.reproducible import money_sum

# A run of the optimiser that has not converged is a failed fit, not a set of parameters.
# It stops when no gradient component (per log-parameter, of the mean log-likelihood)
# exceeds 1e-7; parameters then agree to about 1e-6, far finer than 3 significant digits.
_TOLERANCE = {"gtol": 1e-7, "maxiter": 2_000}
# BFGS also stops with "precision loss" when float64 can lower the objective no further;
# with a gradient this small that is the optimum, not a failure.
_FLAT_ENOUGH = 1e-6


@dataclass(frozen=True)
class BgNbd:
    """Purchase rate ~ Gamma(r, alpha); drop-out probability after each purchase ~ Beta(a, b)."""
    r: float
    alpha: float
    a: float
    b: float
    name: ClassVar[str] = "bgnbd"

    def log_likelihood(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return bgnbd_log_likelihood(self, x, t_x, T)

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return probability_alive(self, x, t_x, T)

    def expected_purchases(self, horizon: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expected_purchases(self, horizon, x, t_x, T)


@dataclass(frozen=True)
class GammaGamma:
    """Spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, gamma) across people."""
    p: float
    q: float
    gamma: float


def purchase_summary(as_of: date) -> Callable[[DataFrame], DataFrame]:
    """Silver events -> per buyer before `as_of`: x, t_x, T in days and the mean repeat spend.

    A purchase is a day with at least one purchase (several orders on one day are one
    purchase, as in the CDNOW data); x counts purchase days after the first; `mean_spend`
    averages the revenue of those repeat days (null when x = 0).
    """
    def _apply(events: DataFrame) -> DataFrame:
        days = (events.where(F.col("is_purchase") & (F.col("event_date") < F.lit(as_of)))
                .groupBy("person_id", "event_date").agg(money_sum("revenue").alias("revenue")))
        first = F.min("event_date")
        per_person = days.groupBy("person_id").agg(
            first.alias("first_purchase"), F.max("event_date").alias("last_purchase"),
            F.count(F.lit(1)).alias("purchase_days"), money_sum("revenue").alias("total"),
            F.min_by("revenue", "event_date").alias("first_revenue"))
        x = F.col("purchase_days") - 1
        return per_person.select(
            "person_id",
            x.cast("double").alias("x"),
            F.datediff("last_purchase", "first_purchase").cast("double").alias("t_x"),
            F.datediff(F.lit(as_of), "first_purchase").cast("double").alias("T"),
            F.when(x > 0, (F.col("total") - F.col("first_revenue")) / x).alias("mean_spend"))
    return _apply


def compress_for_bgnbd(summary: DataFrame) -> DataFrame:
    """Unique (x, t_x, T) with the number of people who share them."""
    return summary.groupBy("x", "t_x", "T").agg(F.count(F.lit(1)).alias("weight"))


def compress_for_gamma_gamma(summary: DataFrame, decimals: int = 2) -> DataFrame:
    """Repeat buyers' unique (x, mean spend rounded to `decimals`) with counts."""
    return (summary.where(F.col("x") > 0)
            .select("x", F.round("mean_spend", decimals).alias("mean_spend"))
            .groupBy("x", "mean_spend").agg(F.count(F.lit(1)).alias("weight")))


def collect_weighted(compressed: DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """The compressed tuples as numpy arrays (bounded by distinct tuples, not people), in
    value order: the likelihood's sum then adds its terms in the same order on every run.
    Collected as Arrow, not as Python rows, which Py4J would build one object at a time."""
    table = compressed.select(*columns, "weight").toArrow()
    arrays = {c: table.column(c).to_numpy(zero_copy_only=False).astype(float) for c in [*columns, "weight"]}
    order = np.lexsort([arrays[c] for c in reversed([*columns, "weight"])])   # the last key sorts first
    return {c: values[order] for c, values in arrays.items()}


def bgnbd_log_likelihood(params: BgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Each person's log-likelihood under BG/NBD (FHL 2005, equation 6)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = (gammaln(r + x) - gammaln(r) + r * np.log(alpha)
              + gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x))
    still_alive = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    dropped = np.where(repeat, np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
                       -np.inf)
    return common + np.logaddexp(still_alive, dropped)


def gamma_gamma_log_likelihood(params: GammaGamma, x: np.ndarray, mean_spend: np.ndarray) -> np.ndarray:
    """Each repeat buyer's log-likelihood of their mean spend (Fader and Hardie 2013)."""
    p, q, g = params.p, params.q, params.gamma
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(g)
            + (px - 1) * np.log(mean_spend) + px * np.log(x) - (px + q) * np.log(g + mean_spend * x))


def _fit(objective: Callable[[np.ndarray], tuple[float, np.ndarray]], starts: Sequence[Sequence[float]],
         what: str) -> np.ndarray:
    """Minimise `objective` (a mean negative log-likelihood per person and its gradient, over
    log-parameters: all parameters are positive) from the first start, and from the next
    only if that one did not converge. With the analytic gradient, quasi-Newton steps need
    about twenty evaluations where a simplex needed about a thousand. BFGS rather than
    L-BFGS-B: with 3 or 4 parameters its memory is no concern, and inside L-BFGS-B each
    evaluation took two to six times as long as alone (likely its BLAS threads competing
    with numpy's for the cores; not confirmed). A start
    at the data's scale comes first: from far off, a search can wander to a degenerate edge
    of these flat likelihoods (a huge shape with a tiny scale)."""
    results = []
    for start in starts:
        result = minimize(objective, np.log(start), jac=True, method="BFGS", options=_TOLERANCE)
        flat = result.status == 2 and np.abs(result.jac).max() < _FLAT_ENOUGH
        if np.isfinite(result.fun) and (result.success or flat):
            return np.exp(result.x)
        results.append(result)
    raise ValueError(f"{what} fit did not converge from any start: {results[-1].message}")


def _distinct(values: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct values, each value's position among them, and the weight of each."""
    distinct, index = np.unique(values, return_inverse=True)
    return distinct, index, np.bincount(index, weights=weight)


# Repeat buyers' terms are summed over slices of this many tuples: a slice's temporaries
# (128 KiB) stay in the CPU cache, where whole arrays' are allocated afresh at each
# evaluation, which about halves an evaluation's time on hundreds of thousands of tuples.
_SLICE = 16_384


def bgnbd_objective(data: dict[str, np.ndarray]) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """log (r, alpha, a, b) -> the weighted mean negative of `bgnbd_log_likelihood`, and its gradient.

    Per person, the log-likelihood is A(x) - (r + x) log(alpha + T) + log(1 + e^odds), with
    odds = log(a / (b + x - 1)) + (r + x) log((alpha + T) / (alpha + t_x)) for repeat buyers
    (the odds of "dropped out after the last purchase" against "still buying, unseen"), and
    no such term when x = 0. A(x), log(alpha + T) and log(alpha + t_x) are computed once per
    distinct value (a few hundred), not once per tuple."""
    x, t_x, T = data["x"], data["t_x"], data["T"]
    weight = data.get("weight", np.ones_like(x))
    people = float(weight.sum())
    xs, _, per_x = _distinct(x, weight)
    once = x == 0
    once_T, _, per_once_T = _distinct(T[once], weight[once])
    w, x1 = weight[~once], x[~once]
    x_values, x_at, _ = _distinct(x1, w)
    T_values, T_at, _ = _distinct(T[~once], w)
    t_values, t_at, _ = _distinct(t_x[~once], w)
    wx = w * x1
    slices = [slice(i, i + _SLICE) for i in range(0, len(x1), _SLICE)]

    def _objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(log_params)
        log_once_T = np.log(alpha + once_T)
        log_T_of, log_t_of = np.log(alpha + T_values), np.log(alpha + t_values)
        inverse_T_of, inverse_t_of = 1.0 / (alpha + T_values), 1.0 / (alpha + t_values)
        odds_of_x = np.log(a) - np.log(b + x_values - 1)
        value = (per_x @ (gammaln(r + xs) - gammaln(r) + r * np.log(alpha)
                          + gammaln(a + b) + gammaln(b + xs) - gammaln(b) - gammaln(a + b + xs))
                 - r * (per_once_T @ log_once_T))
        d_r = per_x @ (digamma(r + xs) - digamma(r) + np.log(alpha)) - per_once_T @ log_once_T
        d_alpha = per_x.sum() * r / alpha - r * (per_once_T @ (1.0 / (alpha + once_T)))
        gone_by_x = np.zeros(len(x_values))       # weighted P(dropped out | data), per distinct x
        for part in slices:
            T_i, t_i, x_i, w_i, rw_i = T_at[part], t_at[part], x_at[part], w[part], r * w[part] + wx[part]
            log_T = log_T_of[T_i]
            silence = log_T - log_t_of[t_i]     # log((alpha + T) / (alpha + t_x)) >= 0
            odds = odds_of_x[x_i] + (r + x1[part]) * silence
            # e^-|odds|, stopped at e^-50: beyond it the terms are below rounding, and
            # subnormal numbers make arithmetic on them far slower.
            small = np.exp(-np.minimum(np.abs(odds), 50.0))
            gone = np.where(odds >= 0, 1.0, small) / (1.0 + small)
            wg = w_i * gone
            value += w_i @ (np.maximum(odds, 0.0) + np.log1p(small)) - rw_i @ log_T
            d_r += wg @ silence - w_i @ log_T
            inverse_T = inverse_T_of[T_i]
            d_alpha -= rw_i @ inverse_T + (wg * (r + x1[part])) @ (inverse_t_of[t_i] - inverse_T)
            gone_by_x += np.bincount(x_i, weights=wg, minlength=len(x_values))
        d_a = per_x @ (digamma(a + b) - digamma(a + b + xs)) + gone_by_x.sum() / a
        d_b = (per_x @ (digamma(a + b) + digamma(b + xs) - digamma(b) - digamma(a + b + xs))
               - gone_by_x @ (1.0 / (b + x_values - 1)))
        gradient = np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
        return -value / people, -gradient / people
    return _objective


def gamma_gamma_objective(data: dict[str, np.ndarray]) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """log (p, q, gamma) -> the weighted mean negative of `gamma_gamma_log_likelihood` over
    repeat buyers with a positive spend, and its gradient."""
    keep = (data["x"] > 0) & (data["mean_spend"] > 0)
    x, spend = data["x"][keep], data["mean_spend"][keep]
    weight = data.get("weight", np.ones_like(data["x"]))[keep]
    people = float(weight.sum())
    xs, _, per_x = _distinct(x, weight)
    # (p x - 1) log(spend) summed over buyers is p * spend_x - spend_1: two constants.
    spend_x, spend_1 = weight @ (x * np.log(spend)), weight @ np.log(spend)
    log_xs = np.log(xs)

    def _objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, g = np.exp(log_params)
        pxs = p * xs
        log_total = np.log(g + spend * x)
        value = (per_x @ (gammaln(pxs + q) - gammaln(pxs) - gammaln(q) + q * np.log(g) + pxs * log_xs)
                 + p * spend_x - spend_1 - weight @ ((p * x + q) * log_total))
        d_p = per_x @ (xs * (digamma(pxs + q) - digamma(pxs) + log_xs)) + spend_x - weight @ (x * log_total)
        d_q = per_x @ (digamma(pxs + q) - digamma(q) + np.log(g)) - weight @ log_total
        d_g = per_x.sum() * q / g - weight @ ((p * x + q) / (g + spend * x))
        return -value / people, -np.array([d_p * p, d_q * q, d_g * g]) / people
    return _objective


def fit_bgnbd(data: dict[str, np.ndarray], start: Sequence[float] | None = None) -> BgNbd:
    """Maximum-likelihood BG/NBD over weighted (x, t_x, T) tuples. Without `start`, from
    alpha at the mean observation time (alpha carries the time unit) and the others at 1,
    then from all at 1 if that did not converge."""
    x, T = data["x"], data["T"]
    weight = data.get("weight", np.ones_like(x))
    if len(x) == 0 or not (x > 0).any():
        raise ValueError("BG/NBD needs people with repeat purchases; there are none")
    starts = [start] if start else [(1.0, float(np.average(T, weights=weight)), 1.0, 1.0), (1.0, 1.0, 1.0, 1.0)]
    return BgNbd(*(float(v) for v in _fit(bgnbd_objective(data), starts, "BG/NBD")))


def fit_gamma_gamma(data: dict[str, np.ndarray], start: Sequence[float] | None = None) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma over weighted (x, mean spend) of repeat buyers.
    Without `start`, from p = 2, q = 3 and gamma set so the model's mean spend
    p * gamma / (q - 1) equals the observed mean (gamma carries the currency), then from all
    at 1 if that did not converge."""
    keep = (data["x"] > 0) & (data["mean_spend"] > 0)
    spend = data["mean_spend"][keep]
    weight = data.get("weight", np.ones_like(data["x"]))[keep]
    if len(spend) == 0:
        raise ValueError("Gamma-Gamma needs repeat buyers with a positive spend; there are none")
    starts = [start] if start else [(2.0, 3.0, float(np.average(spend, weights=weight))), (1.0, 1.0, 1.0)]
    return GammaGamma(*(float(v) for v in _fit(gamma_gamma_objective(data), starts, "Gamma-Gamma")))


def probability_alive(params: BgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(still a customer at T | x, t_x, T) (FHL 2005, equation 13)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    ratio = np.where(x > 0, a / np.where(x > 0, b + x - 1, 1.0) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return 1.0 / (1.0 + ratio)


def expected_purchases(params: BgNbd, horizon: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[purchases in (T, T + horizon] | x, t_x, T] (FHL 2005, equation 10)."""
    from scipy.special import hyp2f1

    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = horizon / (alpha + T + horizon)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + T) / (alpha + T + horizon)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    return head * body * probability_alive(params, x, t_x, T)


def expected_spend(params: GammaGamma, x: np.ndarray, mean_spend: np.ndarray) -> np.ndarray:
    """E[spend per purchase | x, mean spend]: a weighted mean of the population mean and
    the person's own (Fader and Hardie 2013, equation 5); the population mean when x = 0."""
    p, q, g = params.p, params.q, params.gamma
    population_mean = p * g / (q - 1)
    own = np.where(x > 0, np.nan_to_num(mean_spend), 0.0)
    weight_own = p * x / (p * x + q - 1)
    return (1 - weight_own) * population_mean + weight_own * own


def with_lifetime_value(counts, spend: GammaGamma, horizon: float) -> Callable[[DataFrame], DataFrame]:
    """Per-person summaries -> the same rows plus `p_alive`, `expected_purchases` over
    `horizon` (the summaries' time unit) and `expected_value` (purchases x spend per
    purchase). `counts`: BG/NBD or another counting model (pipelines/models/
    counting_models.py). Computed in the executors, batch by batch, with the fitted
    parameters."""
    def _predict(batches):
        for batch in batches:
            x, t_x, T = batch["x"].to_numpy(), batch["t_x"].to_numpy(), batch["T"].to_numpy()
            purchases = counts.expected_purchases(horizon, x, t_x, T)
            per_purchase = expected_spend(spend, x, batch["mean_spend"].to_numpy(dtype=float, na_value=np.nan))
            yield batch.assign(p_alive=counts.p_alive(x, t_x, T), expected_purchases=purchases,
                               expected_value=purchases * per_purchase)

    def _apply(summary: DataFrame) -> DataFrame:
        added = [StructField(name, DoubleType()) for name in ("p_alive", "expected_purchases", "expected_value")]
        schema = StructType(summary.schema.fields + added)   # StructType.add would change the frame's own
        return summary.mapInPandas(_predict, schema)
    return _apply


def actual_value(as_of: date, horizon_days: int) -> Callable[[DataFrame], DataFrame]:
    """Silver events -> per buyer in [as_of, as_of + horizon): purchase days and revenue,
    counted the way the summaries count them (several orders on one day are one purchase)."""
    end = date.fromordinal(as_of.toordinal() + horizon_days)

    def _apply(events: DataFrame) -> DataFrame:
        days = (events.where(F.col("is_purchase") & (F.col("event_date") >= F.lit(as_of))
                             & (F.col("event_date") < F.lit(end)))
                .groupBy("person_id", "event_date").agg(money_sum("revenue").alias("revenue")))
        return days.groupBy("person_id").agg(F.count(F.lit(1)).cast("double").alias("actual_purchases"),
                                             money_sum("revenue").alias("actual_value"))
    return _apply


def holdout_errors(predicted: DataFrame, actual: DataFrame) -> dict[str, float]:
    """Predictions of the summaries' people vs. what they did (people absent from `actual`
    bought nothing): MAE and RMSE of value and of purchases, totals. One aggregation."""
    joined = (predicted.join(actual, "person_id", "left")
              .fillna(0.0, subset=["actual_purchases", "actual_value"]))
    value_error = F.col("expected_value") - F.col("actual_value")
    purchase_error = F.col("expected_purchases") - F.col("actual_purchases")
    row = joined.agg(F.count(F.lit(1)).alias("people"), F.avg(F.abs(value_error)).alias("mae"),
                     F.sqrt(F.avg(value_error ** 2)).alias("rmse"),
                     F.avg(F.abs(purchase_error)).alias("purchases_mae"),
                     F.sum("expected_value").alias("predicted"), F.sum("actual_value").alias("actual"),
                     F.sum("expected_purchases").alias("predicted_purchases"),
                     F.sum("actual_purchases").alias("actual_purchases")).first()
    actual_total = float(row["actual"] or 0.0)
    return {"holdout_people": float(row["people"]), "holdout_mae": float(row["mae"] or 0.0),
            "holdout_rmse": float(row["rmse"] or 0.0), "holdout_purchases_mae": float(row["purchases_mae"] or 0.0),
            "holdout_total_predicted": float(row["predicted"] or 0.0), "holdout_total_actual": actual_total,
            "holdout_total_ratio": float(row["predicted"] or 0.0) / actual_total if actual_total else float("inf"),
            "holdout_purchases_predicted": float(row["predicted_purchases"] or 0.0),
            "holdout_purchases_actual": float(row["actual_purchases"] or 0.0)}
