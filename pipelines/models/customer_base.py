"""Customer-base features for the propensity models: each person's BG/NBD and Gamma-Gamma
quantities as of a date (see lifetime_value.py), which carry what a purchase log says of
who is still buying: repeat purchases, the span between first and last, the time since
the first, P(alive), the purchases and value expected over the model's horizon, and the
log-odds of at least one purchase within it.

    base = CustomerBase(events, spend_decimals=2)
    if not base.unavailable([as_of]):                  # else why there is no fit as of that date
        rows = features.transform(base.features(as_of, horizon_days=60))

Point in time, like every feature: the summaries and the fitted parameters read only
purchases strictly before the as-of date, so a training snapshot never sees its own
future. A person without a purchase before that date is not yet a customer: every column
is 0 for them, the log-odds the lowest (of a probability of 1e-6). When the likelihood
cannot be fitted on the purchases before a date (no repeat buyers yet), there are no
customer-base features as of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Callable

import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame

from pipelines.models.lifetime_value import (BgNbd, GammaGamma, collect_weighted, compress_for_bgnbd,
                                             compress_for_gamma_gamma, fit_bgnbd, fit_gamma_gamma,
                                             purchase_summary, with_lifetime_value)

# The columns, in the order the models take them.
CUSTOMER_BASE_COLUMNS = ("bgnbd_repeat_purchases", "bgnbd_purchase_span_days", "bgnbd_customer_days",
                         "bgnbd_p_alive", "bgnbd_expected_purchases", "bgnbd_expected_value",
                         "bgnbd_purchase_log_odds")
# BG/NBD's own answer to "a purchase within the horizon?", as log-odds: a candidate model
# by itself (a logistic regression on it alone recalibrates it, keeping its ranking).
PURCHASE_LOG_ODDS = "bgnbd_purchase_log_odds"
# Probabilities are clipped this far from 0 and 1 before the log-odds; a person who never
# bought (not a customer yet) has the lowest.
_CLIP = 1e-6
# Grows with the calendar for every customer, like tenure: left out of drift.
CALENDAR_COLUMN = "bgnbd_customer_days"


@dataclass(frozen=True)
class Fitted:
    """The summaries of the buyers before a date, and the parameters fitted on them; or why
    there are none (`reason`)."""
    summary: DataFrame | None
    bgnbd: BgNbd | None
    spend: GammaGamma | None
    reason: str = ""


class CustomerBase:
    """Fits once per as-of date and keeps the buyers' summaries cached for every model that
    asks (convert and churn share the dates of their snapshots)."""

    def __init__(self, events: DataFrame, spend_decimals: int):
        self.events = events
        self.spend_decimals = spend_decimals
        self._fitted: dict[date, Fitted] = {}

    def fitted(self, as_of: date) -> Fitted:
        if as_of not in self._fitted:
            summary = self.events.transform(purchase_summary(as_of)).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                bgnbd = fit_bgnbd(collect_weighted(compress_for_bgnbd(summary), ["x", "t_x", "T"]))
                spend = fit_gamma_gamma(collect_weighted(compress_for_gamma_gamma(summary, self.spend_decimals),
                                                         ["x", "mean_spend"]))
                self._fitted[as_of] = Fitted(summary, bgnbd, spend)
            except ValueError as err:
                summary.unpersist()
                self._fitted[as_of] = Fitted(None, None, None, f"as of {as_of}: {err}")
        return self._fitted[as_of]

    def unavailable(self, dates) -> str:
        """Why the features cannot be made for every one of `dates` ("" when they can)."""
        return "; ".join(reason for d in dates if (reason := self.fitted(d).reason))

    def features(self, as_of: date, horizon_days: int) -> Callable[[DataFrame], DataFrame]:
        """Feature rows as of `as_of` -> the same rows with the customer-base columns."""
        fitted = self.fitted(as_of)
        if fitted.summary is None:
            raise ValueError(f"no customer-base features {fitted.reason}")
        quantities = (fitted.summary
                      .transform(with_lifetime_value(fitted.bgnbd, fitted.spend, float(horizon_days)))
                      .select("person_id",
                              F.col("x").alias("bgnbd_repeat_purchases"),
                              F.col("t_x").alias("bgnbd_purchase_span_days"),
                              F.col("T").alias("bgnbd_customer_days"),
                              F.col("p_alive").alias("bgnbd_p_alive"),
                              F.col("expected_purchases").alias("bgnbd_expected_purchases"),
                              F.col("expected_value").alias("bgnbd_expected_value"),
                              purchase_log_odds(fitted.bgnbd, horizon_days).alias(PURCHASE_LOG_ODDS)))
        lowest = math.log(_CLIP / (1 - _CLIP))

        def _apply(rows: DataFrame) -> DataFrame:
            return (rows.join(quantities, "person_id", "left")
                    .fillna(0.0, subset=[c for c in CUSTOMER_BASE_COLUMNS if c != PURCHASE_LOG_ODDS])
                    .fillna(lowest, subset=[PURCHASE_LOG_ODDS]))
        return _apply

    def release(self) -> None:
        for fitted in self._fitted.values():
            if fitted.summary is not None:
                fitted.summary.unpersist()
        self._fitted.clear()


def purchase_log_odds(params: BgNbd, horizon_days: int) -> Column:
    """Over summaries with `p_alive`: the log-odds of at least one purchase in the next
    `horizon_days`. Alive, a person's rate is Gamma(r + x, alpha + T) given their history
    and only a purchase can end them, so P(none) = 1 - P(alive) + P(alive) *
    ((alpha + T) / (alpha + T + h))^(r + x)."""
    still = F.pow((F.lit(params.alpha) + F.col("T")) / (F.lit(params.alpha + horizon_days) + F.col("T")),
                  F.lit(params.r) + F.col("x"))
    some = F.col("p_alive") * (F.lit(1.0) - still)
    clipped = F.least(F.greatest(some, F.lit(_CLIP)), F.lit(1 - _CLIP))
    return F.log(clipped / (F.lit(1.0) - clipped))
