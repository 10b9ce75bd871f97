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
from typing import Callable, Sequence

import numpy as np
import pyspark.sql.functions as F
from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, StructField, StructType
from scipy.optimize import minimize
from scipy.special import gammaln

from pipelines.reproducible import exact_sum

# A run of the optimiser that has not converged is a failed fit, not a set of parameters.
_TOLERANCE = {"xatol": 1e-9, "fatol": 1e-11, "maxiter": 20_000, "maxfev": 40_000}


@dataclass(frozen=True)
class BgNbd:
    """Purchase rate ~ Gamma(r, alpha); drop-out probability after each purchase ~ Beta(a, b)."""
    r: float
    alpha: float
    a: float
    b: float


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
                .groupBy("person_id", "event_date").agg(exact_sum("revenue").alias("revenue")))
        first = F.min("event_date")
        per_person = days.groupBy("person_id").agg(
            first.alias("first_purchase"), F.max("event_date").alias("last_purchase"),
            F.count(F.lit(1)).alias("purchase_days"), exact_sum("revenue").alias("total"),
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
    value order: the likelihood's sum then adds its terms in the same order on every run."""
    rows = sorted(compressed.select(*columns, "weight").collect())
    return {c: np.array([row[c] for row in rows], dtype=float) for c in [*columns, "weight"]}


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


def _fit(negative_ll: Callable[[np.ndarray], float], starts: Sequence[Sequence[float]], what: str) -> np.ndarray:
    """Minimise over log-parameters (all parameters are positive) from each start; the
    best converged optimum wins. `negative_ll` is a mean per person, not a sum: the
    tolerances are absolute, and on a sum over 180,000 buyers the simplex could not meet
    `fatol` (40,000 evaluations instead of about 1,000). Scaling moves neither the optimum
    nor the simplex's path, only where it stops. Several starts because these likelihoods
    are flat in places: from a start far from the data's scale, the simplex can wander off to a
    degenerate edge (a huge shape with a tiny scale) and stop there or run out of steps."""
    results = [minimize(negative_ll, np.log(start), method="Nelder-Mead", options=_TOLERANCE) for start in starts]
    converged = [r for r in results if r.success and np.isfinite(r.fun)]
    if not converged:
        raise ValueError(f"{what} fit did not converge from any start: {results[-1].message}")
    return np.exp(min(converged, key=lambda r: r.fun).x)


def fit_bgnbd(data: dict[str, np.ndarray], start: Sequence[float] | None = None) -> BgNbd:
    """Maximum-likelihood BG/NBD over weighted (x, t_x, T) tuples. Without `start`, two
    starts: unit values, and alpha at the mean observation time (alpha carries the time unit)."""
    x, t_x, T = data["x"], data["t_x"], data["T"]
    weight = data.get("weight", np.ones_like(x))
    if len(x) == 0 or not (x > 0).any():
        raise ValueError("BG/NBD needs people with repeat purchases; there are none")
    starts = [start] if start else [(1.0, 1.0, 1.0, 1.0), (1.0, float(np.average(T, weights=weight)), 1.0, 1.0)]
    people = float(weight.sum())

    def negative_ll(log_params: np.ndarray) -> float:
        return -float(np.sum(weight * bgnbd_log_likelihood(BgNbd(*np.exp(log_params)), x, t_x, T))) / people
    return BgNbd(*(float(v) for v in _fit(negative_ll, starts, "BG/NBD")))


def fit_gamma_gamma(data: dict[str, np.ndarray], start: Sequence[float] | None = None) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma over weighted (x, mean spend) of repeat buyers.
    Without `start`, two starts: unit values, and p = 2, q = 3 with gamma set so the
    model's mean spend p * gamma / (q - 1) equals the observed mean (gamma carries the currency)."""
    keep = (data["x"] > 0) & (data["mean_spend"] > 0)
    x, spend = data["x"][keep], data["mean_spend"][keep]
    weight = data.get("weight", np.ones_like(data["x"]))[keep]
    if len(x) == 0:
        raise ValueError("Gamma-Gamma needs repeat buyers with a positive spend; there are none")
    starts = [start] if start else [(1.0, 1.0, 1.0), (2.0, 3.0, float(np.average(spend, weights=weight)))]
    people = float(weight.sum())

    def negative_ll(log_params: np.ndarray) -> float:
        return -float(np.sum(weight * gamma_gamma_log_likelihood(GammaGamma(*np.exp(log_params)), x, spend))) / people
    return GammaGamma(*(float(v) for v in _fit(negative_ll, starts, "Gamma-Gamma")))


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


def with_lifetime_value(bgnbd: BgNbd, spend: GammaGamma, horizon: float) -> Callable[[DataFrame], DataFrame]:
    """Per-person summaries -> the same rows plus `p_alive`, `expected_purchases` over
    `horizon` (the summaries' time unit) and `expected_value` (purchases x spend per
    purchase). Computed in the executors, batch by batch, with the fitted parameters."""
    def _predict(batches):
        for batch in batches:
            x, t_x, T = batch["x"].to_numpy(), batch["t_x"].to_numpy(), batch["T"].to_numpy()
            purchases = expected_purchases(bgnbd, horizon, x, t_x, T)
            per_purchase = expected_spend(spend, x, batch["mean_spend"].to_numpy(dtype=float, na_value=np.nan))
            yield batch.assign(p_alive=probability_alive(bgnbd, x, t_x, T), expected_purchases=purchases,
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
                .groupBy("person_id", "event_date").agg(exact_sum("revenue").alias("revenue")))
        return days.groupBy("person_id").agg(F.count(F.lit(1)).cast("double").alias("actual_purchases"),
                                             exact_sum("revenue").alias("actual_value"))
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


def parameters_dict(bgnbd: BgNbd, spend: GammaGamma) -> dict[str, dict[str, float]]:
    return {"bgnbd": {k: float(v) for k, v in vars(bgnbd).items()},
            "gamma_gamma": {k: float(v) for k, v in vars(spend).items()}}


def parameters_from_dict(data: dict) -> tuple[BgNbd, GammaGamma]:
    return BgNbd(**data["bgnbd"]), GammaGamma(**data["gamma_gamma"])
