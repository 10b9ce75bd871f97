"""Affinity: which categories (or products, or content sections) a person leans to, as
shares of their interest. Written for categories; a `Dimension` names what else is ranked
the same way (products and content sections: pipelines/models/item_affinity.py).

Interaction strength of a person for a category: product views, cart adds and purchases
of its items, weighted by kind and halved every `half_life_days`:

    strength(p, c) = sum over p's events with an item of c before as_of of
                     weight(kind) * 2 ** (-days_ago / half_life_days)

Affinity is the person's share of that strength, shrunk towards the population's shares
(the posterior mean of a Dirichlet-multinomial with prior strength `prior_strength`):

    affinity(p, c) = (strength(p, c) + prior_strength * popularity(c)) / (sum_c strength(p, c) + prior_strength)

so a person seen once is mostly the population and a frequent shopper is mostly their own
history; the affinities of a person sum to 1 over the catalogue. The prior strength is the
one parameter learned, chosen on a validation window before the holdout.

Implicit-feedback ALS (Spark ML) is measured beside it on the same holdout. Its strength is
borrowing from similar people; on data without such structure the person's own history
wins, and the run says so in its metrics (`holdout_als_precision_at_k`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Mapping

import pandas as pd
import pyspark.sql.functions as F
from pyspark.ml.recommendation import ALS
from pyspark.sql import Column, DataFrame, Window

from pipelines.core.reproducible import exact_sum, in_canonical_order
from pipelines.models import grouped_ranking

# Interaction kind -> the silver events column counting it.
INTERACTION_COLUMNS = {"product_views": "product_views", "cart_adds": "cart_adds", "purchases": "is_purchase"}


@dataclass(frozen=True)
class Dimension:
    """What is ranked: the column it is named by (`item`), the silver events expression
    giving an event's items as an array, and the interactions that count (kind -> silver
    column). Kinds in `may_be_negative` may weigh below zero (a removal lowers interest);
    `source` is the silver column the items come from."""
    item: str
    source: str
    items: Callable[[], Column]
    interactions: Mapping[str, str]
    may_be_negative: tuple[str, ...] = ()

    def missing(self, columns: list[str]) -> list[str]:
        """The silver columns this dimension reads that `columns` lacks (a silver table
        written by an earlier release)."""
        return [c for c in (self.source, *self.interactions.values()) if c not in columns]


CATEGORIES = Dimension("category", "categories", lambda: F.col("categories"), INTERACTION_COLUMNS)
PRODUCTS = Dimension("sku", "skus", lambda: F.col("skus"), {**INTERACTION_COLUMNS, "cart_removals": "cart_removals"},
                     may_be_negative=("cart_removals",))
# Where content affinity may take a web event's section from (silver events columns).
CONTENT_FIELDS = ("site_section", "page_name", "url_section")


def content(field: str) -> Dimension:
    """Content sections, named by the silver events column `field` (one of CONTENT_FIELDS)."""
    if field not in CONTENT_FIELDS:
        raise ValueError(f"section_field must be one of {', '.join(CONTENT_FIELDS)}, got {field!r}")
    return Dimension("section", field, lambda: F.when(F.col(field).isNotNull(), F.array(F.col(field))),
                     {"page_views": "page_views"})


def dimension_of(parameters: Mapping) -> Dimension:
    """The dimension a trained version ranks, from its logged parameters."""
    return PRODUCTS if parameters["item"] == "sku" else content(parameters["section_field"])


def interaction_strengths(as_of: date, weights: Mapping[str, float], half_life_days: float,
                          lookback_days: int, start: date | None = None,
                          dimension: Dimension = CATEGORIES) -> Callable[[DataFrame], DataFrame]:
    """Silver events -> (person_id, <item>, strength) from events in the `lookback_days`
    before `as_of` (and not before `start`, when given), recency-weighted to `as_of`; only
    positive strengths are kept."""
    unknown = sorted(set(weights) - set(dimension.interactions))
    if unknown:
        raise ValueError(f"interaction_weights names {unknown}; known: {sorted(dimension.interactions)}")
    negative = sorted(kind for kind, w in weights.items() if w < 0 and kind not in dimension.may_be_negative)
    if half_life_days <= 0 or negative:
        raise ValueError("affinity needs half_life_days > 0 and interaction weights >= 0"
                         + (f" (negative: {negative})" if negative else ""))
    first = as_of - timedelta(days=lookback_days)
    if start is not None:
        first = max(first, start)
    item = dimension.item

    def _apply(events: DataFrame) -> DataFrame:
        weight = sum((F.lit(float(w)) * F.col(dimension.interactions[kind]).cast("double")
                      for kind, w in weights.items()), F.lit(0.0))
        decay = F.pow(F.lit(2.0), -F.datediff(F.lit(as_of), F.col("event_date")) / F.lit(float(half_life_days)))
        return (events.where((F.col("event_date") < F.lit(as_of)) & (F.col("event_date") >= F.lit(first)))
                .select("person_id", F.explode(dimension.items()).alias(item), (weight * decay).alias("strength"))
                .where(F.col("strength") != 0)
                .groupBy("person_id", item).agg(exact_sum("strength").alias("strength"))
                .where(F.col("strength") > 0))
    return _apply


def popularity(strengths: DataFrame, item: str = "category") -> DataFrame:
    """(<item>, popularity): each item's share of all strength (one row per item)."""
    per_item = strengths.groupBy(item).agg(exact_sum("strength").alias("strength"))
    total = per_item.agg(exact_sum("strength").alias("_total"))
    return (per_item.crossJoin(total)
            .select(item, (F.col("strength") / F.col("_total")).alias("popularity")))


def most_popular(shares: DataFrame, k: int, item: str = "category") -> DataFrame:
    """(rank, <item>) of the `k` most popular items (at most k rows to the driver)."""
    ranked = shares.orderBy(F.desc("popularity"), item).limit(k).collect()
    return shares.sparkSession.createDataFrame([(i + 1, row[item]) for i, row in enumerate(ranked)],
                                               f"rank int, {item} string")


def ranked(scores: DataFrame, k: int, item: str, exclusions: DataFrame | None = None) -> DataFrame:
    """(person_id, <item>, score) -> (person_id, rank, <item>, score), the best `k` per
    person after the exclusions; ties go to the item's name, so ranks are reproducible."""
    if exclusions is not None:
        scores = scores.join(exclusions, ["person_id", item], "left_anti")
    best = Window.partitionBy("person_id").orderBy(F.desc("score"), item)
    return (scores.withColumn("rank", F.row_number().over(best)).where(F.col("rank") <= k)
            .select("person_id", "rank", item, "score"))


def _popular(shares: DataFrame, n: int, item: str) -> DataFrame:
    return most_popular(shares, n, item).select(item)


def popularity_scores(strengths: DataFrame, n: int, item: str) -> DataFrame:
    """Every person with strengths x the `n` most popular items, scored by popularity."""
    shares = popularity(strengths, item)
    return (strengths.select("person_id").distinct().crossJoin(F.broadcast(_popular(shares, n, item)))
            .join(shares, item).select("person_id", item, F.col("popularity").alias("score")))


def shrunk_scores(strengths: DataFrame, prior_strength: float, n: int, item: str,
                  similarities: pd.DataFrame | None = None, neighbour_weight: float = 0.0) -> DataFrame:
    """(person_id, <item>, score) of each person's `n` best items: their strengths over the
    items they touched and the `n` most popular, shrunk towards popularity by
    `prior_strength` (the `history` score; `co_occurrence`'s with `similarities`, which
    lend each person's strength to similar items, pipelines/models/item_affinity.py).

    The grouped ranking with the whole catalogue as one group: a person's share of it is 1
    and an item's share of it is its popularity, which leaves this formula."""
    if prior_strength < 0:
        raise ValueError(f"prior_strength must be >= 0, got {prior_strength}")
    items = popularity(strengths, item).select(F.col(item).alias("item"), F.lit("").alias("group"),
                                               F.lit(1.0).alias("group_popularity"),
                                               F.col("popularity").alias("within"))
    return ranked_in_batches(strengths, items, prior_strength, n, item, 1, similarities, neighbour_weight)


def ranked_in_batches(strengths: DataFrame, items: DataFrame, prior_strength: float, n: int, item: str,
                      popular_groups: int, similarities: pd.DataFrame | None = None,
                      neighbour_weight: float = 0.0) -> DataFrame:
    """The grouped ranking (pipelines/models/grouped_ranking.py) of every person with
    strengths: `items` has a row per item (`item`, `group`, `group_popularity`, `within`),
    `similarities` a row per item and neighbour (`item`, `neighbour`, `similarity`). What
    it reads of the catalogue (a catalogue's size, never people) goes to the driver and to
    every task; each person's strengths become one row, ranked in numpy with the other
    people of their batch."""
    # Silver keeps no null item; one here would be ranked under the name "None".
    catalogue = grouped_ranking.catalogue(items.where(F.col("item").isNotNull()).toPandas(), n, popular_groups,
                                          similarities, neighbour_weight)
    people = (strengths.where(F.col(item).isNotNull()).groupBy("person_id")
              .agg(F.collect_list(item).alias("_items"), F.collect_list("strength").alias("_strengths")))
    return people.mapInPandas(grouped_ranking.rank_batches(catalogue, float(prior_strength), n, item),
                              f"person_id string, {item} string, score double")


def top_affinities(strengths: DataFrame, prior_strength: float, k: int, item: str = "category") -> DataFrame:
    """(person_id, <item>, strength) -> (person_id, rank, <item>, affinity), the `k`
    items of highest affinity per person. An item the person never touched scores by
    popularity alone, so only the `k` most popular can reach a top k: those are the
    candidates beside the person's own."""
    if k < 1:
        raise ValueError(f"affinity needs k >= 1, got {k}")
    return ranked(shrunk_scores(strengths, prior_strength, k, item), k, item).withColumnRenamed("score", "affinity")


def popularity_top(strengths: DataFrame, k: int, item: str = "category") -> DataFrame:
    """The baseline a model must beat: everyone gets the `k` most popular items."""
    return ranked(popularity_scores(strengths, k, item), k, item).withColumnRenamed("score", "affinity")


def future_categories(start: date, end: date, weights: Mapping[str, float],
                      dimension: Dimension = CATEGORIES) -> Callable[[DataFrame], DataFrame]:
    """Silver events -> the (person_id, <item>) pairs of interactions in [start, end)
    (of the kinds weighted above zero)."""
    def _apply(events: DataFrame) -> DataFrame:
        counted = [F.col(dimension.interactions[kind]).cast("double") > 0 for kind, w in weights.items() if w > 0]
        interacted = counted[0] if len(counted) == 1 else F.greatest(*counted)
        return (events.where((F.col("event_date") >= F.lit(start)) & (F.col("event_date") < F.lit(end)) & interacted)
                .select("person_id", F.explode(dimension.items()).alias(dimension.item)).distinct())
    return _apply


def precision_at_k(top: DataFrame, future: DataFrame, k: int, item: str = "category") -> dict[str, float]:
    """Ranked items vs. what people then interacted with, over people who had both:
    `precision_at_k` (share of the top k that came true) and `hit_rate_top1`."""
    truth = future.withColumn("_hit", F.lit(1.0))
    judged = (top.join(future.select("person_id").distinct(), "person_id")
              .join(truth, ["person_id", item], "left")
              .withColumn("_hit", F.coalesce(F.col("_hit"), F.lit(0.0))))
    row = judged.agg((F.sum("_hit") / (F.countDistinct("person_id") * F.lit(float(k)))).alias("p"),
                     F.avg(F.when(F.col("rank") == 1, F.col("_hit"))).alias("top1"),
                     F.countDistinct("person_id").alias("people")).first()
    return {"precision_at_k": float(row["p"] or 0.0), "hit_rate_top1": float(row["top1"] or 0.0),
            "people": float(row["people"])}


def numbered_people(strengths: DataFrame) -> DataFrame:
    """(person_id, user): integer ids for ALS, numbered with zipWithIndex (no collect) in
    person_id order, so the same people get the same numbers (and ALS the same start)
    however the strengths are partitioned; checkpointed so that no recomputation renumbers."""
    return (strengths.select("person_id").distinct().orderBy("person_id").rdd.map(lambda row: row[0])
            .zipWithIndex().toDF(["person_id", "user"]).localCheckpoint(eager=True))


def numbered_items(strengths: DataFrame, item: str) -> DataFrame:
    """(item: int, <item>): the catalogue numbered in name order, without the driver."""
    return (strengths.select(item).distinct().orderBy(item).rdd.map(lambda row: row[0])
            .zipWithIndex().toDF([item, "item"]).localCheckpoint(eager=True))


def als_top_categories(strengths: DataFrame, k: int, rank: int, reg_param: float, alpha: float,
                       seed: int, item: str = "category") -> DataFrame:
    """The challenger: implicit-feedback ALS on the same strengths -> (person_id, rank,
    <item>, affinity), the `k` best items per person."""
    people, items = numbered_people(strengths), numbered_items(strengths, item)
    data = in_canonical_order(strengths.join(people, "person_id").join(items, item), "user", "item")
    model = ALS(rank=rank, regParam=reg_param, alpha=alpha, implicitPrefs=True, userCol="user", itemCol="item",
                ratingCol="strength", seed=seed, coldStartStrategy="drop", nonnegative=True).fit(data)
    recommended = (model.recommendForAllUsers(k)
                   .select("user", F.posexplode("recommendations").alias("_position", "_r"))
                   .select("user", (F.col("_position") + 1).alias("rank"), F.col("_r.item").alias("item"),
                           F.col("_r.rating").alias("affinity")))
    return (recommended.join(people, "user").join(items, "item")
            .select("person_id", "rank", item, "affinity"))


def judged_weights(parameters: Mapping) -> Mapping[str, float]:
    """The interactions a version's holdout counted: the conf's first weights (a version
    logged before weights could be chosen has only its own)."""
    return parameters.get("judged_weights", parameters["interaction_weights"])


def strengths_as_of(events: DataFrame, parameters: Mapping, as_of: date,
                    dimension: Dimension = CATEGORIES) -> DataFrame:
    """`interaction_strengths` as of `as_of`, with a version's logged parameters."""
    return events.transform(interaction_strengths(as_of, parameters["interaction_weights"],
                                                  parameters["half_life_days"], parameters["lookback_days"],
                                                  dimension=dimension))
