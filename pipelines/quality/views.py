"""Flat views of each table that its GX suite checks. Pure transforms.

Nested values (item prices, identity namespaces, currency codes) are reduced to one
column per rule, so each expectation reads one column and its failures show the
offending values. A rule that needs a list from conf (valid currencies, known
namespaces) yields the first value outside the list, null when there is none.
"""

from __future__ import annotations

from typing import Callable, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame


def _first_outside(values: Column, allowed: Sequence[str]) -> Column:
    """The first non-null element of `values` not in `allowed`, else null."""
    allowed_array = F.array(*[F.lit(v) for v in allowed])
    return F.try_element_at(F.filter(values, lambda v: v.isNotNull() & ~F.array_contains(allowed_array, v)), F.lit(1))


def _unknown_namespace(known: Sequence[str]) -> Column:
    return _first_outside(F.map_keys(F.coalesce(F.col("identityMap"), F.create_map())), known)


def bronze_events_view(currency_codes: Sequence[str], namespaces: Sequence[str]) -> Callable[[DataFrame], DataFrame]:
    """Bronze events -> the columns of the `bronze_events` suite."""
    def _apply(events: DataFrame) -> DataFrame:
        items = F.coalesce(F.col("productListItems"), F.array())
        payments = F.coalesce(F.col("commerce.order.payments"), F.array())
        currencies = F.concat(F.array(F.col("commerce.order.currencyCode")),
                              F.transform(items, lambda i: i["currencyCode"]),
                              F.transform(payments, lambda p: p["currencyCode"]))
        return events.select(
            "_id", "timestamp", "eventType", "primary_id",
            F.col("commerce.order.priceTotal").alias("order_price_total"),
            F.array_min(F.transform(items, lambda i: i["priceTotal"])).alias("min_item_price"),
            F.array_min(F.transform(items, lambda i: i["quantity"])).alias("min_item_quantity"),
            _first_outside(currencies, currency_codes).alias("unknown_currency_code"),
            _unknown_namespace(namespaces).alias("unknown_identity_namespace"),
        )
    return _apply


def bronze_profiles_view(namespaces: Sequence[str]) -> Callable[[DataFrame], DataFrame]:
    """Bronze profile fragments -> the columns of the `bronze_profiles` suite."""
    def _apply(profiles: DataFrame) -> DataFrame:
        return profiles.select(
            "_id", "updated_at", "primary_id",
            F.col("personalEmail.address").alias("email"),
            F.col("person.birthYear").alias("birth_year"),
            _unknown_namespace(namespaces).alias("unknown_identity_namespace"),
        )
    return _apply


def features_view(feature_columns: Sequence[str], windowed_columns: Sequence[str]) -> Callable[[DataFrame], DataFrame]:
    """Feature rows -> the same rows plus two summaries the `features` suite checks:
    how many model inputs are null, and the smallest windowed counter."""
    def _apply(features: DataFrame) -> DataFrame:
        nulls = sum((F.col(c).isNull().cast("int") for c in feature_columns), F.lit(0))
        return (features.withColumn("null_feature_count", nulls)
                .withColumn("min_windowed_value", F.least(*[F.col(c) for c in windowed_columns])
                            if len(windowed_columns) > 1 else F.col(windowed_columns[0])))
    return _apply


def scores_view(eligible: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Scores of a date (one row per person and model) -> the same rows plus `person_model`
    (what must be unique) and `ineligible_person` (the person id when `eligible`, rows of
    person_id and model_name, does not hold the pair: the model should not have scored them)."""
    def _apply(scores: DataFrame) -> DataFrame:
        marks = eligible.select("person_id", "model_name").distinct().withColumn("_eligible", F.lit(True))
        return (scores.join(marks, ["person_id", "model_name"], "left")
                .withColumn("person_model", F.concat_ws(" ", "model_name", "person_id"))
                .withColumn("ineligible_person", F.when(F.col("_eligible").isNull(), F.col("person_id")))
                .drop("_eligible"))
    return _apply


def profile_ranges_view(prefixes: Sequence[str], other_scores: Sequence[str] = ()) -> Callable[[DataFrame], DataFrame]:
    """Profile rows -> the same rows plus, per kind of value, the first of the models'
    columns (`<prefix>_probability`, ...; `other_scores` are more 0-100 scores) outside its
    range, null when all are in range. One expectation per kind then covers however many
    models conf declares."""
    ranges = {"probability": (0.0, 1.0), "score": (0, 100), "percentile": (1, 100)}

    def _apply(profiles: DataFrame) -> DataFrame:
        for kind, (low, high) in ranges.items():
            columns = [f"{p}_{kind}" for p in prefixes] + (list(other_scores) if kind == "score" else [])
            outside = [F.when(~F.col(c).between(low, high), F.col(c).cast("double")) for c in columns]
            profiles = profiles.withColumn(f"{kind}_out_of_range", F.coalesce(*outside) if len(outside) > 1
                                           else outside[0])
        return profiles
    return _apply


def profile_table_after_merge(current: DataFrame, key: str, order: str) -> Callable[[DataFrame], DataFrame]:
    """Rows about to be merged -> the profile table as the MERGE would leave it.

    A row replaces the current one when its `order` value is the same or newer; people
    without a current row are added. Duplicate incoming rows stay duplicates here, so
    the suite's uniqueness check sees them before the MERGE does.
    """
    def _apply(incoming: DataFrame) -> DataFrame:
        current_order = current.select(key, F.col(order).alias("_current_order"))
        winners = (incoming.join(current_order, key, "left")
                   .where(F.col("_current_order").isNull() | (F.col(order) >= F.col("_current_order")))
                   .drop("_current_order"))
        kept = current.join(winners.select(key).distinct(), key, "left_anti")
        return kept.unionByName(winners)
    return _apply
