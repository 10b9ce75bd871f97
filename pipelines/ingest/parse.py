"""Raw landing records -> typed XDM rows or quarantine rows. Pure transforms, no I/O.

    flagged = raw.transform(parse_records(EXPERIENCE_EVENT, aliases)).transform(flag_records(["_id"], "timestamp"))
    good, bad = good_records(flagged, priority, run_date), bad_records(flagged)

Every input record ends in exactly one of the two frames; `bad` carries the reason.
The record is parsed once, in the JVM (`enrich.xdm.NormaliseRecord`: both XDM forms to a
row of the export-form schema, unknown fields to `_rescued_data`, wrong types named).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Callable, Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import types as T

from pipelines.core.errors import BadInputError
from pipelines.ingest.landing import FILE_ERROR, RAW, SOURCE_FILE
from pipelines.xdm.identity_map import identities, primary_identity

REASON = "reason"
RESCUED = "_rescued_data"
PARSE_ERROR = "_parse_error"
# The record's position in its batch (file split, then line): unique within the batch. Read
# from the cached parse it is the same at every read, and a lost partition recomputed from
# the same split gets the same numbers back.
POSITION = "_position"
NORMALISE_CLASS = "enrich.xdm.NormaliseRecord"

REASON_NO_IDENTITY = "missing identity: identityMap holds no id"
REASON_BAD_TIMESTAMP = "bad timestamp: not an ISO-8601 time"


def missing(field: str) -> str:
    return f"missing {field}"


def reason_kind(reason: str) -> str:
    """What kind of problem a quarantine reason names, without its detail: `not JSON`,
    `wrong type`, `missing _id`, ... (the detail stays on the quarantine row)."""
    return reason.split(":", 1)[0].strip()


def register_normaliser(spark: SparkSession) -> None:
    """Check that the normaliser is on Spark's classpath, or say which jar is missing."""
    from py4j.protocol import Py4JJavaError

    jvm = spark.sparkContext._jvm
    try:
        jvm.org.apache.spark.util.Utils.classForName(NORMALISE_CLASS, True, False)
    except Py4JJavaError as err:  # the JVM's ClassNotFoundException
        raise BadInputError(
            f"the XDM normaliser ({NORMALISE_CLASS}) is not on Spark's classpath: run `make setup`, "
            "or pass .cache/jars/enrich-xdm.jar to spark-submit with --jars") from err


def _normaliser_for(spark: SparkSession, schema: T.StructType) -> str:
    """The session's name for the normaliser returning rows of `schema` (a Java function's
    return type is fixed when it is registered: one registration per schema)."""
    name = "xdm_normalise_" + hashlib.sha1(schema.json().encode()).hexdigest()[:12]
    spark.udf.registerJavaFunction(name, NORMALISE_CLASS, T.StructType([
        T.StructField("record", schema), T.StructField("rescued", T.StringType()),
        T.StructField("error", T.StringType())]))
    return name


def parse_records(schema: T.StructType, namespace_codes: Mapping[str, str]) -> Callable[[DataFrame], DataFrame]:
    """Raw records (`_raw` bytes, `_source_file`, `_file_error`) -> the schema's columns plus
    `_rescued_data`, `_parse_error` and `_position`; needs `register_normaliser` first.
    `namespace_codes` maps lower-cased identityMap keys to codes (see `namespace_codes`)."""
    def _apply(raw: DataFrame) -> DataFrame:
        normalised = F.call_function(_normaliser_for(raw.sparkSession, schema), F.col(RAW), F.lit(schema.json()),
                                     F.lit(json.dumps(dict(namespace_codes), sort_keys=True)))
        with_normalised = raw.withColumn("_normalised", F.when(F.col(FILE_ERROR).isNull(), normalised))
        return with_normalised.select(
            F.col(RAW).cast("string").alias(RAW), SOURCE_FILE,
            F.coalesce(F.col(FILE_ERROR), F.col("_normalised.error")).alias(PARSE_ERROR),
            F.col("_normalised.rescued").alias(RESCUED),
            F.col("_normalised.record").alias("record"),
            F.monotonically_increasing_id().alias(POSITION),
        ).select(RAW, SOURCE_FILE, PARSE_ERROR, RESCUED, POSITION, "record.*")

    return _apply


def _blank(column: Column) -> Column:
    return column.isNull() | (F.trim(column) == "")


def quarantine_reason(required: Sequence[str], time_column: str | None) -> Column:
    """The first rule a record breaks, or null for a good record."""
    rule = F.when(F.col(PARSE_ERROR).isNotNull(), F.col(PARSE_ERROR))
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
            .drop(REASON, RAW, PARSE_ERROR)
            .withColumn("primary_namespace", primary["namespace"])
            .withColumn("primary_id", primary["id"])
            .withColumn("_ingest_run_date", F.lit(run_date).cast("date")))


def with_event_time(events: DataFrame) -> DataFrame:
    """Typed `timestamp` plus the `event_date` partition column."""
    typed = events.withColumn("timestamp", F.try_to_timestamp(F.col("timestamp")))
    return typed.withColumn("event_date", F.to_date("timestamp"))


# A profile fragment's audit fields, most specific first: Platform's export, an older
# export's name, the auditable data type's.
PROFILE_TIME_FIELDS = ("_repo.lastModifiedDate", "_repo.modifyDate", "modifiedAt")


def profile_fragments(file_times: DataFrame, latest: datetime) -> Callable[[DataFrame], DataFrame]:
    """Profile fragments -> with `updated_at` and an `_id` for those written without one.

    XDM asks no `@id` or time of a profile record: a profile is keyed by its identities.
    `updated_at` is the fragment's audit time, else its landing file's modification time
    (`file_times`: `_source_file`, `modified_at`), at most `latest` (the end of the night the
    run is for: a file delivered the next morning describes that night). A fragment without
    `_id` gets one from its identities and that time, so a later export of the same person
    is a new fragment and the same file read twice is the same one."""
    def _apply(profiles: DataFrame) -> DataFrame:
        audited = F.coalesce(*[F.try_to_timestamp(F.col(field)) for field in PROFILE_TIME_FIELDS])
        with_time = (profiles.join(F.broadcast(file_times.withColumnRenamed("modified_at", "_file_time")),
                                   SOURCE_FILE, "left")
                     .withColumn("updated_at", F.coalesce(audited, F.least(F.col("_file_time"), F.lit(latest))))
                     .drop("_file_time"))
        keys = F.array_sort(F.transform(identities(F.col("identityMap")),
                                        lambda ident: F.concat_ws(":", ident["namespace"], ident["id"])))
        derived = F.concat(F.lit("identities:"), F.sha2(F.concat_ws("\u0000", keys), 256).substr(1, 32),
                           F.lit("@"), F.date_format("updated_at", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"))
        return with_time.withColumn("_id", F.when(_blank(F.col("_id")), derived).otherwise(F.col("_id")))
    return _apply


def later_repeats(records: DataFrame, key: str, order: Sequence[str]) -> DataFrame:
    """The `_position` of every record but the first of its `key` (by `order`, then position).

    Only the key, the order columns and the position are shuffled: a batch's full nested rows
    are not moved to find the few repeats: shuffling and sorting them cost more than parsing."""
    ranked = Window.partitionBy(key).orderBy(*[F.col(c).asc_nulls_last() for c in order], POSITION)
    return (records.select(key, *order, POSITION).withColumn("_rank", F.row_number().over(ranked))
            .where("_rank > 1").select(POSITION))


def without(records: DataFrame, repeats: DataFrame) -> DataFrame:
    """`records` less the rows whose `_position` is in `repeats`, and less the position."""
    return records.join(repeats, POSITION, "left_anti").drop(POSITION)


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
