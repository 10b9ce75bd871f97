"""How close each model comes to the best possible on generated data: the oracle.

The generator knows every person's latent traits (landing/ground_truth). From them, the
oracle predicts each holdout exactly as well as anything can: the true chance of a
purchase in the window, the true expected spend, the true category, product and content
preferences. A model's
ratio to the oracle on its own holdout (same people, same labels) says how much of the
learnable signal it found; the rest is noise no model can predict.

Evaluation only: the nightly never reads the ground truth.

    ratios = oracle_ratios(spark, cfg, "lakehouse/landing/ground_truth")
"""

from __future__ import annotations

from datetime import date

import pyspark.sql.functions as F
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import Column, DataFrame, SparkSession

from pipelines.core import lakehouse
from pipelines.core.config import Config
from pipelines.features.build import person_features
from pipelines.models import artifacts, registry
from pipelines.models.affinity import (dimension_of, future_categories, judged_weights, precision_at_k,
                                       strengths_as_of)
from pipelines.models.item_affinity import ranking_metrics
from pipelines.models.propensity import positive_probability
from pipelines.models.specs import AFFINITY, ITEM_AFFINITIES, LIFETIME_VALUE, ModelSpec, enabled, propensity_specs
from pipelines.models.value_regressor import labelled_buyers

TRAITS = ("start_day", "active_until_day", "purchase_rate_per_day", "expected_order_value", "category_preferences",
          "product_preferences", "content_preferences", "history_start_date")
# Trait maps of item -> chance: each is read as map<string,double>.
PREFERENCE_MAPS = ("category_preferences", "product_preferences", "content_preferences")


def truth_by_person(spark: SparkSession, truth_dir: str, graph: DataFrame) -> DataFrame:
    """The generator's traits keyed by the pipeline's person_id, through the ECIDs that every
    generated person's events carry (a person's ECIDs are theirs alone)."""
    truth = spark.read.json(truth_dir).select(F.explode("ecids").alias("id"), *TRAITS)
    ecids = graph.where(F.col("namespace") == "ECID").select("id", "person_id")
    people = ecids.join(truth, "id").drop("id").dropDuplicates(["person_id"])
    for name in PREFERENCE_MAPS:
        people = people.withColumn(name, F.from_json(F.to_json(name), "map<string,double>"))
    return people


def _active_days(as_of: date, horizon_days: int) -> Column:
    """Days of [as_of, as_of + horizon) during which the person is a customer."""
    start = F.datediff(F.lit(as_of), F.col("history_start_date").cast("date")).cast("double")
    return F.greatest(F.lit(0.0), F.least("active_until_day", start + F.lit(float(horizon_days)))
                      - F.greatest("start_day", start))


def purchase_chance(as_of: date, horizon_days: int) -> Column:
    return F.lit(1.0) - F.exp(-F.col("purchase_rate_per_day") * _active_days(as_of, horizon_days))


def _auc(rows: DataFrame, score: str) -> float:
    return float(BinaryClassificationEvaluator(rawPredictionCol=score, labelCol="label",
                                               metricName="areaUnderROC").evaluate(rows))


def propensity_ratio(spark: SparkSession, cfg: Config, spec: ModelSpec, truth: DataFrame) -> dict:
    """The champion's holdout AUC over the oracle's, on the holdout rows it was judged on."""
    champion = registry.require_champion(spec.registered_name)
    params = registry.run_params(champion.run_id)
    holdout = date.fromisoformat(params["holdout_as_of"])
    rows = (lakehouse.read(spark, cfg.table("training_sets"))
            .where((F.col("model") == spec.key) & (F.col("split") == "holdout")
                   & (F.col("training_run_date") == F.lit(champion.tags[registry.RUN_DATE_TAG]).cast("date"))))
    chance = purchase_chance(holdout, spec.horizon_days)
    oracle = F.lit(1.0) - chance if spec.target == "churn" else chance
    scored = (registry.load_spark_model(spec.registered_name, champion.version).transform(rows)
              .select("person_id", "label", positive_probability().alias("model_score"))
              .join(truth, "person_id").withColumn("oracle_score", oracle).cache())
    model_auc, oracle_auc = _auc(scored, "model_score"), _auc(scored, "oracle_score")
    people = scored.count()
    scored.unpersist()
    return {"metric": "AUC-ROC", "model": model_auc, "oracle": oracle_auc, "ratio": model_auc / oracle_auc,
            "people": people}


def value_ratio(spark: SparkSession, cfg: Config, truth: DataFrame, events: DataFrame) -> dict:
    """The oracle's holdout MAE over the champion's (both <= 1 is worse than the oracle), on
    the buyers the champion was judged on."""
    name = str(cfg.get(f"models.{LIFETIME_VALUE}.registered_name"))
    champion = registry.require_champion(name)
    params = registry.run_params(champion.run_id)
    holdout, horizon = date.fromisoformat(params["holdout_as_of"]), int(params["horizon_days"])
    features = events.transform(person_features(holdout, cfg.get("features.windows_days"),
                                                int(cfg.get("features.eligibility_lookback_days"))))
    judged = labelled_buyers(events, features, holdout, horizon)
    expected = F.col("purchase_rate_per_day") * _active_days(holdout, horizon) * F.col("expected_order_value")
    row = (judged.join(truth, "person_id")
           .agg(F.avg(F.abs(expected - F.col("actual_value"))).alias("mae"), F.count(F.lit(1)).alias("people"))
           .first())
    model_mae = float(champion.tags["holdout_mae"])
    return {"metric": "MAE", "model": model_mae, "oracle": float(row["mae"]), "ratio": float(row["mae"]) / model_mae,
            "people": int(row["people"])}


def _truth_top(people: DataFrame, truth: DataFrame, preferences: str, item: str, k: int) -> DataFrame:
    """(person_id, rank, <item>): each person's `k` truly preferred items, best first."""
    by_chance = F.expr(f"transform(array_sort(map_entries({preferences}), (a, b) -> CASE WHEN a.value > b.value "
                       "THEN -1 WHEN a.value < b.value THEN 1 ELSE 0 END), e -> e.key)")
    return (people.join(truth, "person_id")
            .select("person_id", F.posexplode(by_chance).alias("position", item))
            .where(F.col("position") < k).select("person_id", (F.col("position") + 1).alias("rank"), item))


def item_affinity_ratio(spark: SparkSession, cfg: Config, key: str, truth: DataFrame, events: DataFrame) -> dict:
    """Product or content affinity: the champion's holdout precision at k over the oracle's
    (each person's truly preferred items), for the people and interactions it was judged on."""
    champion = registry.require_champion(str(cfg.get(f"models.{key}.registered_name")))
    params = registry.run_params(champion.run_id)
    parameters = artifacts.affinity_parameters(champion.run_id)
    holdout, run_date = date.fromisoformat(params["holdout_as_of"]), date.fromisoformat(params["run_date"])
    k, item, ranked = int(parameters["top_k"]), parameters["item"], dimension_of(parameters)
    people = strengths_as_of(events, parameters, holdout, ranked).select("person_id").distinct()
    preferences = "product_preferences" if item == "sku" else "content_preferences"
    future = events.transform(future_categories(holdout, run_date, judged_weights(parameters), ranked))
    oracle = ranking_metrics(_truth_top(people, truth, preferences, item, k), future, k, item,
                             int(params["catalogue_size"]))
    model = float(champion.tags["holdout_precision_at_k"])
    return {"metric": f"precision@{k}", "model": model, "oracle": oracle["precision_at_k"],
            "ratio": model / oracle["precision_at_k"], "people": int(oracle["people"]),
            "popularity": float(champion.tags["holdout_popularity_precision_at_k"]),
            "candidate": params.get("chosen_candidate", "")}


def affinity_ratio(spark: SparkSession, cfg: Config, truth: DataFrame, events: DataFrame) -> dict:
    """The champion's holdout precision at k over the oracle's (the true preferences' top k),
    for the same people and the same holdout interactions."""
    name = str(cfg.get(f"models.{AFFINITY}.registered_name"))
    champion = registry.require_champion(name)
    params = registry.run_params(champion.run_id)
    parameters = artifacts.affinity_parameters(champion.run_id)
    holdout, k = date.fromisoformat(params["holdout_as_of"]), int(parameters["top_k"])
    run_date = date.fromisoformat(params["run_date"])
    people = strengths_as_of(events, parameters, holdout).select("person_id").distinct()
    ranked = _truth_top(people, truth, "category_preferences", "category", k)
    future = events.transform(future_categories(holdout, run_date, judged_weights(parameters)))
    oracle = precision_at_k(ranked, future, k)
    model = float(champion.tags["holdout_precision_at_k"])
    return {"metric": f"precision@{k}", "model": model, "oracle": oracle["precision_at_k"],
            "ratio": model / oracle["precision_at_k"], "people": int(oracle["people"])}


def oracle_ratios(spark: SparkSession, cfg: Config, truth_dir: str) -> dict[str, dict]:
    """Each champion against the oracle on its holdout, by model key."""
    registry.connect(cfg)
    graph = lakehouse.read(spark, cfg.table("identity_graph"))
    truth = truth_by_person(spark, truth_dir, graph).cache()
    events = lakehouse.read(spark, cfg.table("silver_events"))
    # Custom models predict what the generator has no latent truth for.
    out = {spec.key: propensity_ratio(spark, cfg, spec, truth) for spec in propensity_specs(cfg) if not spec.is_custom}
    if enabled(cfg, LIFETIME_VALUE):
        out[LIFETIME_VALUE] = value_ratio(spark, cfg, truth, events)
    if enabled(cfg, AFFINITY):
        out[AFFINITY] = affinity_ratio(spark, cfg, truth, events)
    for key in ITEM_AFFINITIES:
        if enabled(cfg, key):
            out[key] = item_affinity_ratio(spark, cfg, key, truth, events)
    truth.unpersist()
    return out

