from datetime import date, datetime

from pipelines import lakehouse
from pipelines.publish.profile_table import PROFILE_SCHEMA, ensure_table, merge_profiles


def _row(pid, probability, day):
    return (pid, "CRMID", f"c-{pid}", probability, round(probability * 100), 50, "medium", "m", 1, day, day,
            datetime(2026, 1, 1), "r")


def _state(spark, path):
    return {r["person_id"]: (r["convert_probability"], r["score_date"])
            for r in lakehouse.read(spark, path).collect()}


def test_newer_scores_win_older_never_overwrite_and_new_people_are_inserted(spark, lake):
    path = lake.table("profile_enrichment")
    table = ensure_table(spark, path, change_data_feed=True)
    d1, d2 = date(2026, 1, 1), date(2026, 1, 2)
    merge_profiles(table, spark.createDataFrame([_row("a", 0.1, d1), _row("b", 0.2, d1)], PROFILE_SCHEMA))
    merge_profiles(table, spark.createDataFrame([_row("a", 0.9, d2), _row("c", 0.3, d2)], PROFILE_SCHEMA))
    merge_profiles(table, spark.createDataFrame([_row("a", 0.5, d1), _row("b", 0.7, d1)], PROFILE_SCHEMA))
    assert _state(spark, path) == {"a": (0.9, d2), "b": (0.7, d1), "c": (0.3, d2)}


def test_rerunning_a_date_with_the_same_scores_changes_nothing_in_the_feed(spark, lake):
    path = lake.table("profile_enrichment")
    table = ensure_table(spark, path, change_data_feed=True)
    rows = spark.createDataFrame([_row("a", 0.1, date(2026, 1, 1)), _row("b", 0.2, date(2026, 1, 1))],
                                 PROFILE_SCHEMA)
    merge_profiles(table, rows)
    after_first = lakehouse.version(spark, path)
    merge_profiles(table, rows)
    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", after_first + 1).load(path)) if lakehouse.version(
        spark, path) > after_first else None
    assert changes is None or changes.count() == 0
    assert _state(spark, path) == {"a": (0.1, date(2026, 1, 1)), "b": (0.2, date(2026, 1, 1))}
