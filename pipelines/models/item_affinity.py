"""Product and content affinity: the top k products (SKUs) or content sections each person
is most likely to interact with next, from the same recency-weighted interaction strengths
as category affinity (pipelines/models/affinity.py), by one of four candidates:

    popularity      everyone gets the most popular items: the floor a model must beat
    history         the person's own strengths shrunk towards popularity (as category affinity):
                        score(p, i) = (s(p, i) + prior * pop(i)) / (sum_i s(p, i) + prior)
                    or, for products with `within_categories`, towards the person's own
                    categories and each product's popularity within its category
    co_occurrence   item to item: the person's strengths spread to the items that the same
                    people interacted with, by cosine similarity over people
                        s'(p, j) = s(p, j) + w * sum_{i != j} s(p, i) * sim(i, j)
                    then shrunk towards popularity as `history` (w = 0 is `history`); a
                    version keeps the similarities as of its run date (`neighbours_of`)
    als             implicit-feedback ALS (Spark ML) on the strengths

Products a person bought that nobody has ever bought twice (a fridge, a mattress) are not
recommended to that person again, unless the conf says the catalogue is consumable.

Each candidate is judged on the interactions of a holdout window: precision@k, recall@k,
NDCG@k and catalogue coverage, and precision at every cut 1..k for the report's plot.
Nothing that grows with people reaches the driver: only the `n` most popular items, one
count, and for the grouped ranking what it reads of the catalogue (its items' groups and
shares, the similarities), a catalogue's size.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Mapping

import pandas as pd
import pyspark.sql.functions as F
from pyspark.sql import DataFrame, Window

from pipelines.core.reproducible import exact_sum
from pipelines.models.affinity import (als_top_categories, dimension_of, popularity, popularity_scores, ranked,
                                       ranked_in_batches, shrunk_scores)

CANDIDATES = ("popularity", "history", "co_occurrence", "als")
# Candidate items per person beyond k, for those a person's exclusions remove: at most this
# many times k (a person who bought more one-off products than that may get fewer than k).
MAX_EXCLUDED_PER_K = 4


def one_off_purchases(events: DataFrame, as_of: date, lookback_days: int) -> DataFrame:
    """(person_id, sku) of products a person bought in the `lookback_days` before `as_of`
    that no one bought in two different orders in that time: not to be recommended to
    that person again."""
    bought = (events.where(F.col("is_purchase") & (F.col("event_date") < F.lit(as_of))
                           & (F.col("event_date") >= F.lit(as_of - timedelta(days=lookback_days))))
              .select("person_id", "event_id", F.explode("skus").alias("sku"))
              .groupBy("person_id", "sku").agg(F.countDistinct("event_id").alias("orders")))
    rebought = bought.where(F.col("orders") > 1).select("sku").distinct()
    return bought.join(rebought, "sku", "left_anti").select("person_id", "sku")


def exclusions_as_of(events: DataFrame, parameters: Mapping, as_of: date) -> DataFrame | None:
    """The one-off purchases to leave out of products' rankings (None: nothing to leave out)."""
    if parameters["item"] != "sku" or parameters["consumable"]:
        return None
    return one_off_purchases(events, as_of, int(parameters["lookback_days"]))


def candidate_depth(k: int, exclusions: DataFrame | None) -> int:
    """How many items to rank per person so that `k` remain after the exclusions."""
    if exclusions is None:
        return k
    most = exclusions.groupBy("person_id").count().agg(F.max("count")).first()[0] or 0
    return k + min(int(most), MAX_EXCLUDED_PER_K * k)


def product_categories(events: DataFrame, as_of: date, lookback_days: int | None = None) -> DataFrame:
    """(sku, category): each product's category, as the events before `as_of` (in the
    `lookback_days` before it, when given) that name one product and one category say most
    often (ties to the first name). A catalogue's size."""
    before = F.col("event_date") < F.lit(as_of)
    if lookback_days is not None:
        before = before & (F.col("event_date") >= F.lit(as_of - timedelta(days=lookback_days)))
    pairs = (events.where(before & (F.size("skus") == 1) & (F.size("categories") == 1))
             .select(F.col("skus")[0].alias("sku"), F.col("categories")[0].alias("category"))
             .groupBy("sku", "category").agg(F.count(F.lit(1)).alias("_events")))
    most = Window.partitionBy("sku").orderBy(F.desc("_events"), "category")
    return pairs.withColumn("_n", F.row_number().over(most)).where(F.col("_n") == 1).select("sku", "category")


# Untouched categories a person's candidates come from, beside their own: the most popular.
POPULAR_GROUPS = 3


def grouped_scores(strengths: DataFrame, prior_strength: float, n: int, item: str, groups: DataFrame,
                   similarities: pd.DataFrame | None = None, neighbour_weight: float = 0.0) -> DataFrame:
    """`shrunk_scores` with a prior that knows each item's group (a product's category):
    an item the person never touched scores by how much they lean to its group and how
    popular it is within it, not by its popularity overall.

        score(p, j) = (s(p, j) + prior * A(p, g(j)) * w(j)) / (S(p) + prior)
        A(p, g)     = (s(p, g) + prior * pop(g)) / (S(p) + prior)   the person's share of the group
        w(j)        = pop(j) / pop(g(j))                              the item's share of its group

    with s(p, j) the person's strength, or with `similarities` their own plus what their
    items lend to it:

        s'(p, j) = s(p, j) + neighbour_weight * sum over p's items i of s(p, i) * sim(i, j)

    Candidates: the items the person touched or was lent, and the `n` most popular items
    of each of their groups and of the POPULAR_GROUPS most popular; the `n` best per person
    are returned (by `ranked_in_batches`). An item with no group is a group of its own."""
    if prior_strength < 0:
        raise ValueError(f"prior_strength must be >= 0, got {prior_strength}")
    shares = (popularity(strengths, item).join(groups.withColumnRenamed("category", "_group"), item, "left")
              .withColumn("_group", F.coalesce("_group", item)))
    group_shares = shares.groupBy("_group").agg(exact_sum("popularity").alias("_group_popularity"))
    items = (shares.join(group_shares, "_group")
             .select(F.col(item).alias("item"), F.col("_group").alias("group"),
                     F.col("_group_popularity").alias("group_popularity"),
                     (F.col("popularity") / F.col("_group_popularity")).alias("within")))
    return ranked_in_batches(strengths, items, prior_strength, n, item, POPULAR_GROUPS, similarities,
                             neighbour_weight)


def item_similarities(strengths: DataFrame, item: str, neighbours: int, max_history: int) -> DataFrame:
    """(<item>, neighbour, similarity): for each item its `neighbours` most similar, by
    the cosine over people of who interacted with what, from each person's `max_history`
    strongest items (so a few very active people do not make the pairs quadratic)."""
    strongest = Window.partitionBy("person_id").orderBy(F.desc("strength"), item)
    history = (strengths.withColumn("_n", F.row_number().over(strongest)).where(F.col("_n") <= max_history)
               .select("person_id", item))
    support = history.groupBy(item).agg(F.count(F.lit(1)).alias("_people"))
    a, b = history.alias("a"), history.alias("b")
    pairs = (a.join(b, (F.col(f"a.{item}") < F.col(f"b.{item}")) & (F.col("a.person_id") == F.col("b.person_id")))
             .groupBy(F.col(f"a.{item}").alias("_a"), F.col(f"b.{item}").alias("_b"))
             .agg(F.count(F.lit(1)).alias("_both")))
    both_ways = pairs.unionByName(pairs.select(F.col("_b").alias("_a"), F.col("_a").alias("_b"), "_both"))
    similar = (both_ways.join(support.select(F.col(item).alias("_a"), F.col("_people").alias("_pa")), "_a")
               .join(support.select(F.col(item).alias("_b"), F.col("_people").alias("_pb")), "_b")
               .select(F.col("_a").alias(item), F.col("_b").alias("neighbour"),
                       (F.col("_both") / F.sqrt(F.col("_pa") * F.col("_pb"))).alias("similarity")))
    closest = Window.partitionBy(item).orderBy(F.desc("similarity"), "neighbour")
    return (similar.withColumn("_n", F.row_number().over(closest)).where(F.col("_n") <= neighbours)
            .drop("_n"))


def neighbours_of(strengths: DataFrame, item: str, parameters: Mapping) -> pd.DataFrame:
    """Co-occurrence's neighbours with a version's parameters, as the ranking reads them: a
    row per item and neighbour (`item`, `neighbour`, `similarity`; a catalogue's size times
    `neighbours`, never people)."""
    return (item_similarities(strengths, item, int(parameters["neighbours"]), int(parameters["max_history"]))
            .select(F.col(item).alias("item"), "neighbour", "similarity").toPandas())


def candidate_scores(strengths: DataFrame, parameters: Mapping, n: int, item: str,
                     groups: DataFrame | None = None, similarities: pd.DataFrame | None = None) -> DataFrame:
    """(person_id, <item>, score) of the `n` best items per person (or more) by the
    candidate `parameters["method"]` names, with its parameters. With `groups` ((item,
    category): products' categories), history and co-occurrence shrink towards the
    person's categories (`grouped_scores`) rather than towards popularity overall.
    Co-occurrence lends through `similarities` (`neighbours_of`: a version's own), or
    through the neighbours of these strengths when none are given."""
    method = parameters["method"]
    if method == "popularity":
        return popularity_scores(strengths, n, item)
    if method in ("history", "co_occurrence"):
        weight = float(parameters.get("neighbour_weight", 0.0))
        if method == "history":
            similarities = None
        elif similarities is None:
            similarities = neighbours_of(strengths, item, parameters)
        prior = float(parameters["prior_strength"])
        if groups is not None:
            return grouped_scores(strengths, prior, n, item, groups, similarities, weight)
        return shrunk_scores(strengths, prior, n, item, similarities, weight)
    if method == "als":
        return (als_top_categories(strengths, n, int(parameters["rank"]), float(parameters["reg_param"]),
                                   float(parameters["alpha"]), int(parameters["seed"]), item)
                .select("person_id", item, F.col("affinity").alias("score")))
    raise ValueError(f"unknown affinity method {method!r}; known: {', '.join(CANDIDATES)}")


def recommend(strengths: DataFrame, parameters: Mapping, k: int, item: str,
              exclusions: DataFrame | None = None, groups: DataFrame | None = None,
              similarities: pd.DataFrame | None = None) -> DataFrame:
    """(person_id, rank, <item>, score): each person's top `k` by the chosen candidate."""
    return ranked(candidate_scores(strengths, parameters, candidate_depth(k, exclusions), item, groups,
                                   similarities), k, item, exclusions)


def groups_as_of(events: DataFrame, parameters: Mapping, as_of: date) -> DataFrame | None:
    """The products' categories a version shrinks towards (None: popularity overall), from
    the same window as its strengths."""
    if parameters["item"] != "sku" or not parameters.get("within_categories"):
        return None
    return product_categories(events, as_of, int(parameters["lookback_days"]))


def events_window(events: DataFrame, parameters: Mapping, as_of: date) -> DataFrame:
    """The silver events a ranking as of `as_of` reads, and only their columns it reads:
    the lookback window before it, for strengths, exclusions and products' categories
    alike (to be read once and cached)."""
    ranked_dimension = dimension_of(parameters)
    columns = ["person_id", "event_id", "event_date", ranked_dimension.source, *ranked_dimension.interactions.values()]
    if parameters["item"] == "sku":
        columns += ["is_purchase", "categories"]
    first = as_of - timedelta(days=int(parameters["lookback_days"]))
    return (events.where((F.col("event_date") < F.lit(as_of)) & (F.col("event_date") >= F.lit(first)))
            .select(*dict.fromkeys(columns)))


def ranking_metrics(top: DataFrame, future: DataFrame, k: int, item: str, catalogue: int) -> dict:
    """Ranked items vs. what people then interacted with, over the people who had both:
    `precision_at_k`, `recall_at_k`, `ndcg_at_k` (binary relevance), `coverage` (the share
    of the `catalogue` items recommended to anyone judged), `people`, and
    `precision_curve`, precision at each cut 1..k."""
    truth = future.select("person_id", item).distinct()
    wanted = truth.groupBy("person_id").agg(F.count(F.lit(1)).alias("_wanted"))
    judged = (top.join(wanted, "person_id")
              .join(truth.withColumn("_hit", F.lit(1.0)), ["person_id", item], "left")
              .withColumn("_hit", F.coalesce(F.col("_hit"), F.lit(0.0))).cache())   # read twice below
    ideal = F.aggregate(F.sequence(F.lit(1), F.least(F.lit(k), F.col("_wanted"))), F.lit(0.0),
                        lambda acc, r: acc + F.lit(1.0) / F.log2(r + F.lit(1)))
    per_person = (judged.groupBy("person_id", "_wanted")
                  .agg(*[F.sum(F.when(F.col("rank") <= cut, F.col("_hit")).otherwise(0.0)).alias(f"_hits{cut}")
                         for cut in range(1, k + 1)],
                       F.sum(F.col("_hit") / F.log2(F.col("rank") + F.lit(1))).alias("_dcg"))
                  .withColumn("_ideal", ideal))
    row = per_person.agg(F.count(F.lit(1)).alias("people"),
                         *[F.avg(F.col(f"_hits{cut}") / F.lit(float(cut))).alias(f"p{cut}") for cut in range(1, k + 1)],
                         F.avg(F.col(f"_hits{k}") / F.col("_wanted")).alias("recall"),
                         F.avg(F.col("_dcg") / F.col("_ideal")).alias("ndcg")).first()
    recommended = judged.select(item).distinct().count()
    judged.unpersist()
    curve = [float(row[f"p{cut}"] or 0.0) for cut in range(1, k + 1)]
    return {"precision_at_k": curve[-1], "recall_at_k": float(row["recall"] or 0.0),
            "ndcg_at_k": float(row["ndcg"] or 0.0), "coverage": recommended / catalogue if catalogue else 0.0,
            "people": float(row["people"]), "precision_curve": curve}

