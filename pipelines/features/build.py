"""Person features as of a date, from events strictly before it (no leakage).

    features = events.transform(person_features(date(2026, 11, 1), windows=[7, 30, 90], lookback_days=365))

`days_ago` of an event is whole days between its date and the as-of date (>= 1), so
"in the last 7 days" means the 7 dates before the as-of date.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Callable, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from pipelines.core.reproducible import money_sum

# Per-window counters: (feature prefix, column of silver events summed).
WINDOW_MEASURES = (
    ("purchases", "is_purchase_n"),
    ("revenue", "revenue"),
    ("product_views", "product_views"),
    ("cart_adds", "cart_adds"),
    ("page_views", "page_views"),
    ("events", "one"),
)
MONEY = {"revenue"}
STATIC_FEATURES = ("days_since_last_event", "days_since_last_purchase", "tenure_days",
                   "lifetime_purchases", "lifetime_revenue", "avg_order_value", "distinct_categories")


def windowed_feature_columns(windows: Sequence[int]) -> list[str]:
    return [f"{name}_{days}d" for days in sorted(windows) for name, _ in WINDOW_MEASURES]


def feature_columns(windows: Sequence[int]) -> list[str]:
    """Model input columns, in a fixed order."""
    return list(STATIC_FEATURES) + windowed_feature_columns(windows)


def _in_window(days: int, column: str) -> Column:
    """The column's sum over the `days` before the as-of date. Money is summed exactly, so a
    feature does not depend on the order events arrive in; counts are exact as doubles."""
    value = F.when(F.col("days_ago") <= days, F.col(column)).otherwise(F.lit(0.0))
    return money_sum(value) if column in MONEY else F.sum(value)


def person_features(as_of: date, windows: Sequence[int], lookback_days: int) -> Callable[[DataFrame], DataFrame]:
    """Silver events -> one row per person active in the `lookback_days` before `as_of`."""
    if not windows or min(windows) < 1:
        raise ValueError(f"windows must be positive day counts, got {list(windows)}")
    if lookback_days < 1:
        raise ValueError(f"lookback_days must be at least 1, got {lookback_days}")

    def _apply(events: DataFrame) -> DataFrame:
        before = (events.where(F.col("event_date") < F.lit(as_of))
                  .withColumn("days_ago", F.datediff(F.lit(as_of), F.col("event_date")))
                  .withColumn("is_purchase_n", F.col("is_purchase").cast("double"))
                  .withColumn("one", F.lit(1.0)))
        aggregates = [
            F.min("days_ago").alias("days_since_last_event"),
            F.max("event_date").alias("last_event_date"),
            F.min(F.when(F.col("is_purchase"), F.col("days_ago"))).alias("_last_purchase"),
            F.max("days_ago").alias("tenure_days"),
            F.sum("is_purchase_n").alias("lifetime_purchases"),
            money_sum("revenue").alias("lifetime_revenue"),
        ]
        aggregates += [_in_window(days, column).alias(f"{name}_{days}d")
                       for days in sorted(windows) for name, column in WINDOW_MEASURES]
        per_person = before.groupBy("person_id").agg(*aggregates)
        # Categories in their own aggregation: counting distinct exploded names is much
        # cheaper than collecting per-person sets of arrays.
        categories = (before.where(F.col("days_ago") <= lookback_days)
                      .select("person_id", F.explode("categories").alias("category"))
                      .groupBy("person_id").agg(F.count_distinct("category").alias("distinct_categories")))
        return (per_person.join(categories, "person_id", "left")
                .withColumn("distinct_categories", F.coalesce(F.col("distinct_categories"), F.lit(0)))
                .where(F.col("days_since_last_event") <= lookback_days)
                # No purchase in the look-back (none yet, or only before it): one day past it,
                # so "longer ago" stays ordered and the value stays in range on long histories.
                .withColumn("days_since_last_purchase",
                            F.least(F.coalesce(F.col("_last_purchase"), F.lit(lookback_days + 1)),
                                    F.lit(lookback_days + 1)).cast("double"))
                .withColumn("avg_order_value",
                            F.when(F.col("lifetime_purchases") > 0,
                                   F.col("lifetime_revenue") / F.col("lifetime_purchases")).otherwise(F.lit(0.0)))
                .withColumn("as_of_date", F.lit(as_of).cast("date"))
                .select("person_id", "as_of_date", "last_event_date",
                        *[F.col(c).cast("double").alias(c) for c in feature_columns(windows)]))
    return _apply


def in_horizon(as_of: date, horizon_days: int) -> Column:
    """True for events in the label horizon [as_of, as_of + horizon_days): the as-of date is
    the first day a label sees and the last day no feature does."""
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    return (F.col("event_date") >= F.lit(as_of)) & (F.col("event_date") < F.lit(as_of + timedelta(days=horizon_days)))


def purchase_labels(as_of: date, horizon_days: int) -> Callable[[DataFrame], DataFrame]:
    """Silver events -> (person_id, label=1) for people who buy in [as_of, as_of + horizon)."""
    horizon = in_horizon(as_of, horizon_days)

    def _apply(events: DataFrame) -> DataFrame:
        return (events.where(horizon & F.col("is_purchase"))
                .select("person_id").distinct().withColumn("label", F.lit(1.0)))
    return _apply


def with_labels(events: DataFrame, as_of: date, horizon_days: int) -> Callable[[DataFrame], DataFrame]:
    """Features as of `as_of` -> the same rows with `label` (1.0 bought in the horizon, else 0.0)."""
    def _apply(features: DataFrame) -> DataFrame:
        labels = events.transform(purchase_labels(as_of, horizon_days))
        return (features.join(labels, "person_id", "left")
                .withColumn("label", F.coalesce(F.col("label"), F.lit(0.0))))
    return _apply
