"""gold/profile_enrichment: one row per person, kept current by MERGE.

A newer score date replaces a person's attributes; a rerun of the same date only
touches rows whose values differ (so the change feed shows real changes only); an
older date never overwrites a newer one.
"""

from __future__ import annotations

from typing import Sequence

import pyspark.sql.functions as F
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

KEY = "person_id"
ORDER = "score_date"

PROFILE_SCHEMA = T.StructType([
    T.StructField("person_id", T.StringType(), False),
    T.StructField("primary_identity_namespace", T.StringType()),
    T.StructField("primary_identity_id", T.StringType()),
    T.StructField("convert_probability", T.DoubleType()),
    T.StructField("convert_score", T.IntegerType()),
    T.StructField("convert_percentile", T.IntegerType()),
    T.StructField("convert_bucket", T.StringType()),
    T.StructField("model_name", T.StringType()),
    T.StructField("model_version", T.IntegerType()),
    T.StructField("score_date", T.DateType()),
    T.StructField("as_of_date", T.DateType()),
    T.StructField("scored_at", T.TimestampType()),
    T.StructField("run_id", T.StringType()),
])


def profile_rows(scores: DataFrame, primary_identities: DataFrame) -> DataFrame:
    """Scores of one date + each person's primary identity -> rows in the profile table's shape."""
    joined = scores.join(primary_identities, "person_id", "left")
    return joined.select(
        "person_id", "primary_identity_namespace", "primary_identity_id",
        F.col("probability").alias("convert_probability"),
        F.col("score").alias("convert_score"),
        F.col("percentile").alias("convert_percentile"),
        F.col("bucket").alias("convert_bucket"),
        "model_name", F.col("model_version").cast("int").alias("model_version"),
        "score_date", "as_of_date", "scored_at", "run_id",
    )


def ensure_table(spark: SparkSession, path: str, change_data_feed: bool) -> DeltaTable:
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(PROFILE_SCHEMA)
    if change_data_feed:
        builder = builder.property("delta.enableChangeDataFeed", "true")
    return builder.execute()


def _differs(columns: Sequence[str]) -> str:
    return " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in columns)


def merge_profiles(table: DeltaTable, rows: DataFrame) -> None:
    """Newer score date wins; the same date updates only changed rows; new people are inserted."""
    attributes = [f.name for f in PROFILE_SCHEMA.fields if f.name != KEY]
    newer = f"s.{ORDER} > t.{ORDER} OR (s.{ORDER} = t.{ORDER} AND ({_differs(attributes)}))"
    (table.alias("t")
     .merge(rows.alias("s"), f"t.{KEY} = s.{KEY}")
     .whenMatchedUpdateAll(condition=newer)
     .whenNotMatchedInsertAll()
     .execute())
