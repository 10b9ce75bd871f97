from datetime import date, datetime

import pyspark.sql.functions as F
import pytest
from pyspark.sql import types as T

from pipelines.core import lakehouse
from pipelines.core.errors import BadInputError
from pipelines.publish.changes import changes_since
from pipelines.publish.profile_table import (RunStamp, affinity_attributes, aligned, attribute_fields,
                                             ensure_table, kept_from_the_table, merge_profiles, nullable_everywhere,
                                             profile_rows, profile_schema, value_attributes)

SCHEMA = profile_schema(["convert"])
# Every score row carries its person's factors (a model-specific one, to see it land in the right column).
FACTORS_SQL = ("array(named_struct('feature', concat(model_name, '_signal'), 'value', 1.0D, 'contribution', 0.4D, "
               "'direction', 'raises', 'importance', 'medium')) as factors")
RUN = datetime(2026, 1, 1)
STAMP = RunStamp(date(2026, 1, 1), datetime(2026, 1, 1, 2), "r")


FACTOR = [("recency", 3.0, -0.6, "lowers", "high")]


def _row(pid, probability, day):
    return (pid, "CRMID", f"c-{pid}", probability, round(probability * 100), 50, "medium", FACTOR, 1, day, day, RUN,
            "r", None)


def _state(spark, path):
    return {r["person_id"]: (r["convert_probability"], r["score_date"])
            for r in lakehouse.read(spark, path).collect()}


def test_newer_scores_win_older_never_overwrite_and_new_people_are_inserted(spark, lake):
    path = lake.table("profile_enrichment")
    table = ensure_table(spark, path, SCHEMA, change_data_feed=True)
    d1, d2 = date(2026, 1, 1), date(2026, 1, 2)
    merge_profiles(table, spark.createDataFrame([_row("a", 0.1, d1), _row("b", 0.2, d1)], SCHEMA))
    merge_profiles(table, spark.createDataFrame([_row("a", 0.9, d2), _row("c", 0.3, d2)], SCHEMA))
    merge_profiles(table, spark.createDataFrame([_row("a", 0.5, d1), _row("b", 0.7, d1)], SCHEMA))
    assert _state(spark, path) == {"a": (0.9, d2), "b": (0.7, d1), "c": (0.3, d2)}


def test_people_not_scored_for_a_while_lose_their_attributes_but_keep_their_row(spark, lake):
    path = lake.table("profile_enrichment")
    table = ensure_table(spark, path, SCHEMA, change_data_feed=True)
    d1, d9, d10 = date(2026, 1, 1), date(2026, 1, 9), date(2026, 1, 10)
    merge_profiles(table, spark.createDataFrame([_row("old", 0.1, d1), _row("recent", 0.2, d9)], SCHEMA))
    # Tonight (the 10th) only "new" is scored; attributes older than the 3rd expire.
    merge_profiles(table, spark.createDataFrame([_row("new", 0.3, d10)], SCHEMA), date(2026, 1, 3), d10)
    rows = {r["person_id"]: r for r in lakehouse.read(spark, path).collect()}
    old = rows["old"]
    assert (old["convert_probability"], old["convert_factors"], old["convert_model_version"]) == (None, None, None)
    assert (old["primary_identity_id"], old["score_date"], old["expired_on"]) == ("c-old", d1, d10)
    assert (rows["recent"]["convert_probability"], rows["recent"]["expired_on"]) == (0.2, None)
    expired_at = lakehouse.version(spark, path)
    # Expiring again changes nothing; being scored again brings the attributes back.
    merge_profiles(table, spark.createDataFrame([_row("new", 0.3, d10)], SCHEMA), date(2026, 1, 3), d10)
    assert lakehouse.read(spark, path).where("person_id = 'old'").first()["expired_on"] == d10
    changed = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", expired_at + 1)
               .load(path).count() if lakehouse.version(spark, path) > expired_at else 0)
    assert changed == 0
    merge_profiles(table, spark.createDataFrame([_row("old", 0.6, date(2026, 1, 11))], SCHEMA))
    back = lakehouse.read(spark, path).where("person_id = 'old'").first()
    assert (back["convert_probability"], back["expired_on"]) == (0.6, None)


def test_rerunning_a_date_with_the_same_scores_changes_nothing_in_the_feed(spark, lake):
    path = lake.table("profile_enrichment")
    table = ensure_table(spark, path, SCHEMA, change_data_feed=True)
    rows = spark.createDataFrame([_row("a", 0.1, date(2026, 1, 1)), _row("b", 0.2, date(2026, 1, 1))], SCHEMA)
    merge_profiles(table, rows)
    after_first = lakehouse.version(spark, path)
    merge_profiles(table, rows)
    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", after_first + 1).load(path)) if lakehouse.version(
        spark, path) > after_first else None
    assert changes is None or changes.count() == 0
    assert _state(spark, path) == {"a": (0.1, date(2026, 1, 1)), "b": (0.2, date(2026, 1, 1))}


def test_scores_of_several_models_become_one_row_per_person(spark):
    day = date(2026, 1, 1)
    scores = spark.createDataFrame(
        [("a", "convert_propensity", 0.8, 80, 95, "high", 3), ("a", "churn_propensity", 0.1, 10, 5, "low", 1),
         ("b", "convert_propensity", 0.2, 20, 30, "low", 3)],
        "person_id string, model_name string, probability double, score int, percentile int, bucket string, "
        "model_version int").selectExpr("*", f"date'{day}' as score_date", f"date'{day}' as as_of_date", FACTORS_SQL,
                                        "timestamp'2026-01-01 02:00:00' as scored_at", "'r' as run_id")
    identities = spark.createDataFrame([("a", "CRMID", "c-a")], "person_id string, primary_identity_namespace "
                                       "string, primary_identity_id string")
    rows = {r["person_id"]: r for r in profile_rows(
        scores, identities, {"convert_propensity": "convert", "churn_propensity": "churn"}, [], STAMP).collect()}
    assert (rows["a"]["convert_probability"], rows["a"]["convert_model_version"], rows["a"]["churn_score"],
            rows["a"]["churn_bucket"], rows["a"]["primary_identity_id"]) == (0.8, 3, 10, "low", "c-a")
    assert ([f["feature"] for f in rows["a"]["convert_factors"]], [f["feature"] for f in rows["a"]["churn_factors"]]) \
        == (["convert_propensity_signal"], ["churn_propensity_signal"])
    # b was not eligible for churn (no recent purchase): its churn columns stay empty.
    assert (rows["b"]["convert_percentile"], rows["b"]["churn_probability"], rows["b"]["churn_model_version"],
            rows["b"]["primary_identity_id"]) == (30, None, None, None)


def test_a_newly_configured_model_adds_its_columns_and_a_dropped_one_is_cleared(spark, lake):
    path = lake.table("profile_enrichment")
    day = date(2026, 1, 1)
    merge_profiles(ensure_table(spark, path, SCHEMA, change_data_feed=True),
                   spark.createDataFrame([_row("a", 0.1, day)], SCHEMA))
    table = ensure_table(spark, path, profile_schema(["churn"]), change_data_feed=True)
    assert {"convert_probability", "churn_probability", "churn_model_version"} <= set(table.toDF().columns)
    later = spark.createDataFrame([("a", "CRMID", "c-a", 0.4, 40, 60, "medium", FACTOR, 2, date(2026, 1, 2),
                                    date(2026, 1, 2), RUN, "r2", None)], profile_schema(["churn"]))
    merge_profiles(table, aligned(later, table.toDF().schema))
    (row,) = lakehouse.read(spark, path).collect()
    assert (row["churn_probability"], row["convert_probability"], row["score_date"]) == (0.4, None, date(2026, 1, 2))


def test_lifetime_values_join_the_scores_and_people_without_purchases_have_none(spark):
    day = date(2026, 1, 1)
    scores = spark.createDataFrame(
        [("a", "convert_propensity", 0.8, 80, 95, "high", 3), ("b", "convert_propensity", 0.2, 20, 30, "low", 3)],
        "person_id string, model_name string, probability double, score int, percentile int, bucket string, "
        "model_version int").selectExpr("*", f"date'{day}' as score_date", f"date'{day}' as as_of_date", FACTORS_SQL,
                                        "timestamp'2026-01-01 02:00:00' as scored_at", "'r' as run_id")
    values = spark.createDataFrame([("a", 250.0, 2.5, 0.9, 99, 4)], "person_id string, expected_value double, "
                                   "expected_purchases double, p_alive double, value_percentile int, model_version int")
    identities = spark.createDataFrame([], "person_id string, primary_identity_namespace string, "
                                       "primary_identity_id string")
    engagement = spark.createDataFrame([("a", 70), ("b", 5)], "person_id string, engagement_score int")
    rows = {r["person_id"]: r for r in profile_rows(scores, identities, {"convert_propensity": "convert"},
                                                     [value_attributes(values, "ltv", "EUR"), engagement],
                                                     STAMP).collect()}
    assert (rows["a"]["engagement_score"], rows["b"]["engagement_score"]) == (70, 5)
    assert (rows["a"]["ltv_expected_value"], rows["a"]["ltv_p_alive"], rows["a"]["ltv_value_percentile"],
            rows["a"]["ltv_model_version"], rows["a"]["convert_score"], rows["a"]["ltv_currency"]) \
        == (250.0, 0.9, 99, 4, 80, "EUR")
    assert (rows["b"]["ltv_expected_value"], rows["b"]["ltv_model_version"]) == (None, None)


@pytest.mark.parametrize("prefixes", [["convert"], ["convert", "churn"]])
def test_the_schema_holds_each_model_once(prefixes):
    names = profile_schema(prefixes).names
    assert len(names) == len(set(names)) and names[0] == "person_id"
    assert [n for n in names if n.endswith("_probability")] == [f"{p}_probability" for p in prefixes]


def test_changes_since_a_version_hold_each_changed_person_once_in_the_latest_state(spark, lake):
    path = lake.table("profile_enrichment")
    table = ensure_table(spark, path, SCHEMA, change_data_feed=True)
    d1, d2, d20 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 20)
    merge_profiles(table, spark.createDataFrame([_row("a", 0.1, d1), _row("b", 0.2, d1), _row("c", 0.3, d1)],
                                                SCHEMA))
    taken = lakehouse.version(spark, path)
    # After the version a downstream took: a changes twice, d is new, b is merged unchanged,
    # then b and c (last scored on the 1st) expire.
    merge_profiles(table, spark.createDataFrame([_row("a", 0.5, d2), _row("b", 0.2, d1), _row("d", 0.4, d2)],
                                                SCHEMA))
    merge_profiles(table, spark.createDataFrame([_row("a", 0.7, d20)], SCHEMA), d2, d20)
    changed, latest = changes_since(spark, path, taken)
    rows = {r["person_id"]: r for r in changed.collect()}
    assert latest == lakehouse.version(spark, path) == taken + 2
    assert {p: (r["change"], r["table_version"], r["convert_probability"], r["expired_on"])
            for p, r in rows.items()} == {
        "a": ("update", taken + 2, 0.7, None), "d": ("insert", taken + 1, 0.4, None),
        "b": ("update", taken + 2, None, d20), "c": ("update", taken + 2, None, d20)}
    nothing, _ = changes_since(spark, path, latest)
    assert nothing.count() == 0 and {"change", "table_version", "convert_probability"} <= set(nothing.columns)


def test_changes_over_versions_written_without_the_change_feed_are_refused_naming_the_table(spark, lake):
    path = lake.table("profile_enrichment")
    table = ensure_table(spark, path, SCHEMA, change_data_feed=True)
    merge_profiles(table, spark.createDataFrame([_row("a", 0.1, date(2026, 1, 1))], SCHEMA))
    taken = lakehouse.version(spark, path)
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = false)")
    merge_profiles(table, spark.createDataFrame([_row("a", 0.2, date(2026, 1, 2))], SCHEMA))
    with pytest.raises(BadInputError, match=f"{path} has no change feed for versions {taken + 1}.."):
        changes_since(spark, path, taken)


def test_each_person_any_insight_covers_gets_one_row_with_only_what_covers_them(spark):
    scores = spark.createDataFrame(
        [("a", "convert_propensity", 0.8, 80, 95, "high", 3)],
        "person_id string, model_name string, probability double, score int, percentile int, bucket string, "
        "model_version int").selectExpr("*", FACTORS_SQL)
    values = spark.createDataFrame([("b", 250.0, 2.5, 0.9, 99, 4)], "person_id string, expected_value double, "
                                   "expected_purchases double, p_alive double, value_percentile int, model_version int")
    engagement = spark.createDataFrame([("b", 40), ("c", 5)], "person_id string, engagement_score int")
    identities = spark.createDataFrame([("c", "CRMID", "c-c"), ("d", "CRMID", "c-d")], "person_id string, "
                                       "primary_identity_namespace string, primary_identity_id string")
    rows = {r["person_id"]: (r["convert_score"], r["ltv_expected_value"], r["engagement_score"],
                             r["primary_identity_id"])
            for r in profile_rows(scores, identities, {"convert_propensity": "convert"},
                                  [value_attributes(values, "ltv", "EUR"), engagement], STAMP).collect()}
    # d has an identity and no insight tonight: no row.
    assert rows == {"a": (80, None, None, None), "b": (None, 250.0, 40, None), "c": (None, None, 5, "c-c")}


def test_a_night_without_scores_still_publishes_the_other_insights(spark):
    scores = spark.createDataFrame([], "person_id string, model_name string, probability double, score int, "
                                   "percentile int, bucket string, model_version int").selectExpr("*", FACTORS_SQL)
    identities = spark.createDataFrame([("a", "CRMID", "c-a")], "person_id string, primary_identity_namespace "
                                       "string, primary_identity_id string")
    engagement = spark.createDataFrame([("a", 70)], "person_id string, engagement_score int")
    (row,) = profile_rows(scores, identities, {"convert_propensity": "convert"}, [engagement], STAMP).collect()
    assert (row["person_id"], row["engagement_score"], row["convert_probability"], row["score_date"], row["run_id"]) \
        == ("a", 70, None, date(2026, 1, 1), "r")


def test_a_skipped_insight_keeps_what_the_table_holds_and_new_people_get_nothing(spark, lake):
    path = lake.table("profile_enrichment")
    table = ensure_table(spark, path, SCHEMA, change_data_feed=True)
    merge_profiles(table, spark.createDataFrame([_row("a", 0.4, date(2026, 1, 1))], SCHEMA))
    # Tonight the convert model was skipped: its columns come empty from tonight's rows.
    tonight = (spark.createDataFrame([_row("a", 0.0, date(2026, 1, 2)), _row("new", 0.0, date(2026, 1, 2))], SCHEMA)
               .withColumn("convert_probability", F.lit(None).cast("double"))
               .withColumn("convert_score", F.lit(None).cast("int")))
    kept = kept_from_the_table(tonight, table.toDF(), ["convert_probability", "convert_score"])
    merge_profiles(table, kept)
    rows = {r["person_id"]: r for r in lakehouse.read(spark, path).collect()}
    assert (rows["a"]["convert_probability"], rows["a"]["convert_score"], rows["a"]["score_date"]) \
        == (0.4, 40, date(2026, 1, 2))
    assert (rows["new"]["convert_probability"], rows["new"]["convert_score"]) == (None, None)


# As `collect_list` declares it: elements non-null (Delta allows no NOT NULL deeper inside).
TOP_CATEGORIES = T.StructField(
    "affinity_top_categories",
    T.ArrayType(T.StructType([T.StructField("category", T.StringType()),
                              T.StructField("affinity", T.DoubleType())]), containsNull=False))


def test_the_table_declares_nullable_elements_and_delta_rs_reads_its_change_feed(spark, lake):
    import pyarrow as pa
    from deltalake import DeltaTable

    path = lake.table("profile_enrichment")
    ranks = spark.createDataFrame([("a", 1, "Cycling", 0.6, 1), ("b", 1, "Home", 0.5, 1), ("b", 2, "Travel", 0.3, 1)],
                                  "person_id string, rank int, category string, affinity double, model_version int")
    attributes = affinity_attributes(ranks, "affinity")
    assert attributes.schema["affinity_top_categories"].dataType.containsNull is False, "as Spark makes it"
    table = ensure_table(spark, path, profile_schema(["convert"], attribute_fields([attributes])),
                         change_data_feed=True)
    assert lakehouse.read(spark, path).schema["affinity_top_categories"].dataType.containsNull is True
    scores = spark.createDataFrame([], "person_id string, model_name string, probability double, score int, "
                                   "percentile int, bucket string, model_version int").selectExpr("*", FACTORS_SQL)
    rows = profile_rows(scores, spark.createDataFrame([("a", "CRMID", "c-a"), ("b", "CRMID", "c-b")],
                                                      "person_id string, primary_identity_namespace string, "
                                                      "primary_identity_id string"),
                        {"convert_propensity": "convert"}, [attributes], STAMP)
    merge_profiles(table, aligned(rows, lakehouse.read(spark, path).schema))
    feed = pa.table(DeltaTable(path).load_cdf(starting_version=0).read_all()).to_pylist()
    inserted = {r["person_id"]: [(c["category"], c["affinity"]) for c in r["affinity_top_categories"]]
                for r in feed if r["_change_type"] == "insert"}
    assert inserted == {"a": [("Cycling", 0.6)], "b": [("Home", 0.5), ("Travel", 0.3)]}


def test_nullable_everywhere_relaxes_every_level_and_keeps_names_and_types():
    relaxed = nullable_everywhere(TOP_CATEGORIES.dataType)
    assert relaxed == T.ArrayType(T.StructType([T.StructField("category", T.StringType(), True),
                                                T.StructField("affinity", T.DoubleType(), True)]), True)
    inner = T.StructType([T.StructField("x", T.ArrayType(T.LongType(), False), False)])
    assert nullable_everywhere(inner) == T.StructType([T.StructField("x", T.ArrayType(T.LongType(), True), True)])
    assert nullable_everywhere(T.MapType(T.StringType(), T.LongType(), False)) == T.MapType(T.StringType(),
                                                                                           T.LongType(), True)
