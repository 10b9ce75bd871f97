import json
from datetime import date

import pyspark.sql.functions as F
from chispa import assert_df_equality

import pytest

from pipelines.ingest.landing import FILE_ERROR, RAW, SOURCE_FILE
from pipelines.ingest.parse import (POSITION, REASON_BAD_TIMESTAMP, REASON_NO_IDENTITY, bad_records,
                                    flag_records, good_records, later_repeats, parse_records, quarantine_rows,
                                    register_normaliser, with_event_time, without)
from pipelines.xdm.schema import EXPERIENCE_EVENT

RUN = date(2026, 3, 1)
ECID = {"ECID": [{"id": "e1", "primary": True}]}


ALIASES = {"4": "ECID"}


@pytest.fixture(autouse=True)
def _normaliser(spark):
    register_normaliser(spark)


def _lines(spark, records):
    def raw(record):
        if isinstance(record, bytes):
            return bytearray(record)
        return bytearray((record if isinstance(record, str) else json.dumps(record)).encode())
    rows = [(raw(r), "file:///landing/f1.json", None) for r in records]
    return spark.createDataFrame(rows, f"{RAW} binary, {SOURCE_FILE} string, {FILE_ERROR} string")


def _split(spark, records):
    parsed = _lines(spark, records).transform(parse_records(EXPERIENCE_EVENT, ALIASES))
    flagged = parsed.transform(flag_records(["_id", "timestamp"], "timestamp"))
    return good_records(flagged, ["CRMID", "ECID"], RUN), bad_records(flagged)


def test_each_bad_record_goes_to_quarantine_with_the_first_rule_it_breaks(spark):
    good = {"_id": "ok", "timestamp": "2026-02-01T10:00:00Z", "eventType": "commerce.purchases", "identityMap": ECID}
    records = [
        good,
        '{"_id": "cut", "timestamp": "2026-02-0',
        {**good, "_id": "typed", "commerce": {"order": {"priceTotal": "ten"}}},
        {k: v for k, v in good.items() if k != "_id"},
        {**good, "_id": "  "},
        {**good, "_id": "no-time", "timestamp": None},
        {**good, "_id": "bad-time", "timestamp": "yesterday"},
        {**good, "_id": "no-identity", "identityMap": {}},
        # Beyond a double's range: infinity would pass every min-only check downstream.
        '{"_id": "huge", "timestamp": "2026-02-01T10:00:00Z", "eventType": "commerce.purchases", '
        '"identityMap": {"ECID": [{"id": "e1"}]}, "commerce": {"order": {"priceTotal": 1e400}}}',
    ]
    good_rows, bad_rows = _split(spark, records)
    assert [r["_id"] for r in good_rows.collect()] == ["ok"]
    reasons = sorted(r["reason"] for r in bad_rows.collect())
    truncated = [r for r in reasons if r.startswith("not JSON: Unexpected end-of-input")]
    assert len(truncated) == 1
    assert [r for r in reasons if r not in truncated] == sorted([
        "missing _id", "missing _id", "missing timestamp", REASON_BAD_TIMESTAMP, REASON_NO_IDENTITY,
        "wrong type: commerce.order.priceTotal must be a number, got a string",
        "wrong type: commerce.order.priceTotal must be a finite number, got a number"])
    assert bad_rows.where(F.col("raw").isNull() | F.col("source_file").isNull()).count() == 0


def test_good_records_carry_primary_identity_event_date_and_run_date(spark):
    good, _ = _split(spark, [{"_id": "a", "timestamp": "2026-02-01T23:59:59.500Z", "identityMap": {
        "ECID": [{"id": "e1"}], "CRMID": [{"id": "c1"}]}}])
    row = good.transform(with_event_time).first()
    assert (row["primary_namespace"], row["primary_id"]) == ("CRMID", "c1")
    assert row["event_date"] == date(2026, 2, 1)
    assert row["_ingest_run_date"] == RUN


def _first_per_id(df):
    return without(df, later_repeats(df, "_id", ["t", "f"]))


def test_repeats_of_an_id_leave_its_earliest_row(spark):
    df = spark.createDataFrame([("a", 2, "f2", 0), ("a", 1, "f9", 1), ("b", 5, "f1", 2)], ["_id", "t", "f", POSITION])
    expected = spark.createDataFrame([("a", 1, "f9"), ("b", 5, "f1")], ["_id", "t", "f"])
    assert_df_equality(_first_per_id(df), expected, ignore_row_order=True)


def test_repeats_leave_the_earliest_of_null_keys_and_every_single_key(spark):
    df = spark.createDataFrame([(None, 3, "f1", 0), (None, 1, "f2", 1), ("c", 4, "f3", 2), ("d", 1, "f4", 3),
                                ("d", 1, "f0", 4)], f"_id string, t int, f string, {POSITION} long")
    expected = spark.createDataFrame([(None, 1, "f2"), ("c", 4, "f3"), ("d", 1, "f0")], "_id string, t int, f string")
    assert_df_equality(_first_per_id(df), expected, ignore_row_order=True)


def test_identical_repeats_leave_the_first_by_position(spark):
    df = spark.createDataFrame([("a", 1, "f1", 7, "later"), ("a", 1, "f1", 3, "first"), ("a", 1, "f1", 9, "last")],
                               f"_id string, t int, f string, {POSITION} long, note string")
    assert [r["note"] for r in _first_per_id(df).collect()] == ["first"]
    assert sorted(r[POSITION] for r in later_repeats(df, "_id", ["t", "f"]).collect()) == [7, 9]


def test_identical_bad_lines_of_a_file_become_one_quarantine_row_that_counts_them(spark):
    bad = spark.createDataFrame([("missing _id", "{}", "f1"), ("missing _id", "{}", "f1"),
                                 ("missing _id", "{}", "f2")], ["reason", "raw", "source_file"])
    rows = bad.transform(quarantine_rows("events", RUN))
    assert sorted((r["source_file"], r["occurrences"]) for r in rows.collect()) == [("f1", 2), ("f2", 1)]
    assert rows.select("record_key").distinct().count() == 2
