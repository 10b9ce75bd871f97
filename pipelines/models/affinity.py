"""Category affinity: which categories a person leans to, as shares of their interest.

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

from datetime import date, timedelta
from typing import Callable, Mapping

import pyspark.sql.functions as F
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, Window

from pipelines.core.reproducible import exact_sum, in_canonical_order

# Interaction kind -> the silver events column counting it.
INTERACTION_COLUMNS = {"product_views": "product_views", "cart_adds": "cart_adds", "purchases": "is_purchase"}


def interaction_strengths(as_of: date, weights: Mapping[str, float], half_life_days: float,
                          lookback_days: int, start: date | None = None) -> Callable[[DataFrame], DataFrame]:
    """Silver events -> (person_id, category, strength) from events in the `lookback_days`
    before `as_of` (and not before `start`, when given), recency-weighted to `as_of`."""
    unknown = sorted(set(weights) - set(INTERACTION_COLUMNS))
    if unknown:
        raise ValueError(f"interaction_weights names {unknown}; known: {sorted(INTERACTION_COLUMNS)}")
    if half_life_days <= 0 or min(weights.values(), default=0) < 0:
        raise ValueError("affinity needs half_life_days > 0 and interaction weights >= 0")
    first = as_of - timedelta(days=lookback_days)
    if start is not None:
        first = max(first, start)

    def _apply(events: DataFrame) -> DataFrame:
        weight = sum((F.lit(float(w)) * F.col(INTERACTION_COLUMNS[kind]).cast("double")
                      for kind, w in weights.items()), F.lit(0.0))
        decay = F.pow(F.lit(2.0), -F.datediff(F.lit(as_of), F.col("event_date")) / F.lit(float(half_life_days)))
        return (events.where((F.col("event_date") < F.lit(as_of)) & (F.col("event_date") >= F.lit(first)))
                .select("person_id", F.explode("categories").alias("category"), (weight * decay).alias("strength"))
                .where(F.col("strength") > 0)
                .groupBy("person_id", "category").agg(exact_sum("strength").alias("strength")))
    return _apply


def popularity(strengths: DataFrame) -> DataFrame:
    """(category, popularity): each category's share of all strength (one row per category)."""
    per_category = strengths.groupBy("category").agg(exact_sum("strength").alias("strength"))
    total = per_category.agg(exact_sum("strength").alias("_total"))
    return (per_category.crossJoin(total)
            .select("category", (F.col("strength") / F.col("_total")).alias("popularity")))


def most_popular(shares: DataFrame, k: int) -> DataFrame:
    """(rank, category) of the `k` most popular categories (a catalogue: small)."""
    ranked = shares.orderBy(F.desc("popularity"), "category").limit(k).collect()
    return shares.sparkSession.createDataFrame([(i + 1, row["category"]) for i, row in enumerate(ranked)],
                                               "rank int, category string")


def top_affinities(strengths: DataFrame, prior_strength: float, k: int) -> DataFrame:
    """(person_id, category, strength) -> (person_id, rank, category, affinity), the `k`
    categories of highest affinity per person. A category the person never touched scores
    by popularity alone, so only the `k` most popular can reach a top k: those are the
    candidates beside the person's own."""
    if prior_strength < 0 or k < 1:
        raise ValueError(f"affinity needs prior_strength >= 0 and k >= 1, got {prior_strength}, {k}")
    shares = popularity(strengths).cache()
    popular = most_popular(shares, k).select("category")
    people = strengths.groupBy("person_id").agg(exact_sum("strength").alias("total"))
    # One strength and zeros per (person, category): the plain sum is exact.
    candidates = (strengths.select("person_id", "category", "strength")
                  .unionByName(people.select("person_id").crossJoin(F.broadcast(popular))
                               .withColumn("strength", F.lit(0.0)))
                  .groupBy("person_id", "category").agg(F.sum("strength").alias("strength")))
    prior = F.lit(float(prior_strength))
    scored = (candidates.join(F.broadcast(shares), "category").join(people, "person_id")
              .withColumn("affinity", (F.col("strength") + prior * F.col("popularity")) / (F.col("total") + prior)))
    by_affinity = Window.partitionBy("person_id").orderBy(F.desc("affinity"), "category")
    return (scored.withColumn("rank", F.row_number().over(by_affinity)).where(F.col("rank") <= k)
            .select("person_id", "rank", "category", "affinity"))


def popularity_top(strengths: DataFrame, k: int) -> DataFrame:
    """The baseline a model must beat: everyone gets the `k` most popular categories."""
    shares = popularity(strengths)
    return (strengths.select("person_id").distinct().crossJoin(F.broadcast(most_popular(shares, k)))
            .join(F.broadcast(shares), "category").withColumnRenamed("popularity", "affinity")
            .select("person_id", "rank", "category", "affinity"))


def future_categories(start: date, end: date, weights: Mapping[str, float]) -> Callable[[DataFrame], DataFrame]:
    """Silver events -> the (person_id, category) pairs of interactions in [start, end)."""
    def _apply(events: DataFrame) -> DataFrame:
        counted = [F.col(INTERACTION_COLUMNS[kind]).cast("double") > 0 for kind, w in weights.items() if w > 0]
        interacted = counted[0] if len(counted) == 1 else F.greatest(*counted)
        return (events.where((F.col("event_date") >= F.lit(start)) & (F.col("event_date") < F.lit(end)) & interacted)
                .select("person_id", F.explode("categories").alias("category")).distinct())
    return _apply


def precision_at_k(top: DataFrame, future: DataFrame, k: int) -> dict[str, float]:
    """Ranked categories vs. what people then interacted with, over people who had both:
    `precision_at_k` (share of the top k that came true) and `hit_rate_top1`."""
    truth = future.withColumn("_hit", F.lit(1.0))
    judged = (top.join(future.select("person_id").distinct(), "person_id")
              .join(truth, ["person_id", "category"], "left")
              .withColumn("_hit", F.coalesce(F.col("_hit"), F.lit(0.0))))
    row = judged.agg((F.sum("_hit") / (F.countDistinct("person_id") * F.lit(float(k)))).alias("p"),
                     F.avg(F.when(F.col("rank") == 1, F.col("_hit"))).alias("top1"),
                     F.countDistinct("person_id").alias("people")).first()
    return {"precision_at_k": float(row["p"] or 0.0), "hit_rate_top1": float(row["top1"] or 0.0),
            "people": float(row["people"])}


def als_top_categories(strengths: DataFrame, k: int, rank: int, reg_param: float, alpha: float,
                       seed: int) -> DataFrame:
    """The challenger: implicit-feedback ALS on the same strengths -> (person_id, rank,
    category, affinity). ALS needs integer ids: people are numbered with zipWithIndex (no
    collect), categories (a catalogue, small) on the driver."""
    # Numbered in person_id order, so the same people get the same numbers (and ALS the same
    # start) however the strengths are partitioned; checkpointed so that no recomputation renumbers.
    people = (strengths.select("person_id").distinct().orderBy("person_id").rdd.map(lambda row: row[0])
              .zipWithIndex().toDF(["person_id", "user"]).localCheckpoint(eager=True))
    names = [row["category"] for row in strengths.select("category").distinct().orderBy("category").collect()]
    items = strengths.sparkSession.createDataFrame(list(enumerate(names)), ["item", "category"])
    data = in_canonical_order(strengths.join(people, "person_id").join(F.broadcast(items), "category"), "user", "item")
    model = ALS(rank=rank, regParam=reg_param, alpha=alpha, implicitPrefs=True, userCol="user", itemCol="item",
                ratingCol="strength", seed=seed, coldStartStrategy="drop", nonnegative=True).fit(data)
    recommended = (model.recommendForAllUsers(k)
                   .select("user", F.posexplode("recommendations").alias("_position", "_r"))
                   .select("user", (F.col("_position") + 1).alias("rank"), F.col("_r.item").alias("item"),
                           F.col("_r.rating").alias("affinity")))
    return (recommended.join(people, "user").join(F.broadcast(items), "item")
            .select("person_id", "rank", "category", "affinity"))


def strengths_as_of(events: DataFrame, parameters: Mapping, as_of: date) -> DataFrame:
    """`interaction_strengths` as of `as_of`, with a version's logged parameters."""
    return events.transform(interaction_strengths(as_of, parameters["interaction_weights"],
                                                  parameters["half_life_days"], parameters["lookback_days"]))
