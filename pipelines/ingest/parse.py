"""Landing lines -> typed XDM rows or quarantine rows. Pure transforms, no I/O.

    flagged = lines.transform(parse_json_lines(EXPERIENCE_EVENT)).transform(flag_records(["_id"], "timestamp"))
    good, bad = good_records(flagged, priority, run_date), bad_records(flagged)

Every input line ends in exactly one of the two frames; `bad` carries the reason.
"""

from __future__ import annotations

from datetime import date
from typing import Callable, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import types as T

from pipelines.xdm.identity import identities, primary_identity
from pipelines.xdm.schema import CORRUPT_RECORD, with_corrupt_record

RAW = "_raw"
SOURCE_FILE = "_source_file"
REASON = "reason"

REASON_UNPARSEABLE = "unparseable: not JSON, or a field of the wrong type"
REASON_NO_IDENTITY = "missing identity: identityMap holds no id"
REASON_BAD_TIMESTAMP = "bad timestamp: not an ISO-8601 time"


def missing(field: str) -> str:
    return f"missing {field}"


def parse_json_lines(schema: T.StructType) -> Callable[[DataFrame], DataFrame]:
    """Parse column `_raw` with `schema`; unparseable lines keep their text in `_corrupt_record`."""
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_RECORD}

    def _apply(lines: DataFrame) -> DataFrame:
        parsed = F.from_json(F.col(RAW), with_corrupt_record(schema), options)
        return lines.select(RAW, SOURCE_FILE, parsed.alias("record")).select(RAW, SOURCE_FILE, "record.*")

    return _apply


def _blank(column: Column) -> Column:
    return column.isNull() | (F.trim(column) == "")


def quarantine_reason(required: Sequence[str], time_column: str | None) -> Column:
    """The first rule a record breaks, or null for a good record."""
    rule = F.when(F.col(CORRUPT_RECORD).isNotNull(), F.lit(REASON_UNPARSEABLE))
    for field in required:
        rule = rule.when(_blank(F.col(field)), F.lit(missing(field)))
    if time_column:
        rule = rule.when(F.try_to_timestamp(F.col(time_column)).isNull(), F.lit(REASON_BAD_TIMESTAMP))
    return rule.when(F.size(identities(F.col("identityMap"))) == 0, F.lit(REASON_NO_IDENTITY))


def flag_records(required: Sequence[str], time_column: str | None) -> Callable[[DataFrame], DataFrame]:
    """Parsed lines -> the same rows with `reason` (null when good); the raw text is kept only
    for bad rows, so a cached flagged batch stays small."""
    def _apply(parsed: DataFrame) -> DataFrame:
        return (parsed.withColumn(REASON, quarantine_reason(required, time_column))
                .withColumn(RAW, F.when(F.col(REASON).isNotNull(), F.col(RAW))))
    return _apply


def bad_records(flagged: DataFrame) -> DataFrame:
    """Quarantine candidates: reason, raw line, source file."""
    return flagged.where(F.col(REASON).isNotNull()).select(
        F.col(REASON), F.col(RAW).alias("raw"), F.col(SOURCE_FILE).alias("source_file"))


def good_records(flagged: DataFrame, priority: Sequence[str], run_date: date) -> DataFrame:
    """Records that passed every rule, with their primary identity and the ingest run date."""
    primary = primary_identity(identities(F.col("identityMap")), priority)
    return (flagged.where(F.col(REASON).isNull())
            .drop(REASON, CORRUPT_RECORD, RAW)
            .withColumn("primary_namespace", primary["namespace"])
            .withColumn("primary_id", primary["id"])
            .withColumn("_ingest_run_date", F.lit(run_date).cast("date")))


def with_event_time(events: DataFrame) -> DataFrame:
    """Typed `timestamp` plus the `event_date` partition column."""
    typed = events.withColumn("timestamp", F.try_to_timestamp(F.col("timestamp")))
    return typed.withColumn("event_date", F.to_date("timestamp"))


def with_profile_time(profiles: DataFrame) -> DataFrame:
    """`updated_at`: when the profile fragment last changed (null when not exported)."""
    return profiles.withColumn("updated_at", F.try_to_timestamp(F.col("_repo.lastModifiedDate")))


def first_per_key(key: str, order: Sequence[str]) -> Callable[[DataFrame], DataFrame]:
    """Keep one row per `key` (the first by `order`), so a batch never repeats a key."""
    def _apply(df: DataFrame) -> DataFrame:
        ranked = Window.partitionBy(key).orderBy(*[F.col(c).asc_nulls_last() for c in order])
        return df.withColumn("_rank", F.row_number().over(ranked)).where("_rank = 1").drop("_rank")
    return _apply


def quarantine_rows(kind: str, run_date: date) -> Callable[[DataFrame], DataFrame]:
    """Group identical bad lines of a file into one row that counts them."""
    def _apply(bad: DataFrame) -> DataFrame:
        return (bad.groupBy("source_file", "raw", REASON).agg(F.count(F.lit(1)).alias("occurrences"))
                .withColumn("record_kind", F.lit(kind))
                .withColumn("record_key", F.sha2(F.concat_ws("\u0000", F.lit(kind), "source_file", "raw"), 256))
                .withColumn("first_seen_run_date", F.lit(run_date).cast("date"))
                .select("record_key", "record_kind", REASON, "source_file", "raw", "occurrences",
                        "first_seen_run_date"))
    return _apply
