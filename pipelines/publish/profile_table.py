"""gold/profile_enrichment: one row per person, kept current by MERGE.

A newer score date replaces a person's attributes; a rerun of the same date only
touches rows whose values differ (so the change feed shows real changes only); an
older date never overwrites a newer one. People no model has scored for a while (conf
publish.expire_after_days) keep their row and identity, but their attributes are cleared
and `expired_on` is set, in the same MERGE: stale insights do not linger on a profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import reduce
from typing import Callable, Mapping, Sequence

import pyspark.sql.functions as F
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from pipelines.scoring.factors import FACTORS_TYPE

KEY = "person_id"
ORDER = "score_date"

IDENTITY_FIELDS = [
    T.StructField("person_id", T.StringType(), False),
    T.StructField("primary_identity_namespace", T.StringType()),
    T.StructField("primary_identity_id", T.StringType()),
]
# Per propensity model, under its profile prefix (convert_probability, churn_score, ...).
MODEL_FIELDS = (("probability", T.DoubleType()), ("score", T.IntegerType()), ("percentile", T.IntegerType()),
                ("bucket", T.StringType()), ("factors", FACTORS_TYPE), ("model_version", T.IntegerType()))
# The lifetime-value model's columns, under its prefix (ltv_expected_value, ...).
VALUE_FIELDS = (("expected_value", T.DoubleType()), ("expected_purchases", T.DoubleType()),
                ("p_alive", T.DoubleType()), ("value_percentile", T.IntegerType()), ("model_version", T.IntegerType()))
RUN_FIELDS = [
    T.StructField("score_date", T.DateType()),
    T.StructField("as_of_date", T.DateType()),
    T.StructField("scored_at", T.TimestampType()),
    T.StructField("run_id", T.StringType()),
    T.StructField("expired_on", T.DateType()),   # set when the attributes were cleared as stale
]
KEPT_ON_EXPIRY = {f.name for f in IDENTITY_FIELDS + RUN_FIELDS}


def profile_schema(prefixes: Sequence[str], attributes: Sequence[T.StructField] = ()) -> T.StructType:
    """Identity, a column group per propensity model, the `attributes` of other insights
    (lifetime value, engagement), then when and by which run."""
    model_fields = [T.StructField(f"{prefix}_{name}", kind) for prefix in prefixes for name, kind in MODEL_FIELDS]
    return T.StructType(IDENTITY_FIELDS + model_fields + list(attributes) + RUN_FIELDS)


def value_attributes(values: DataFrame, prefix: str, currency: str) -> DataFrame:
    """Lifetime values of one date -> person_id and the `<prefix>_...` profile columns, with
    the currency the spend is in."""
    return values.select("person_id", *[F.col(name).cast(kind).alias(f"{prefix}_{name}")
                                        for name, kind in VALUE_FIELDS],
                         F.lit(currency).alias(f"{prefix}_currency"))


def affinity_attributes(rows: DataFrame, prefix: str) -> DataFrame:
    """Top categories of one date (a row per person and rank) -> person_id and
    `<prefix>_top_categories` (category and affinity, best first), `<prefix>_top_category`,
    `<prefix>_model_version`."""
    ranked = F.sort_array(F.collect_list(F.struct("rank", "category", "affinity")))
    return (rows.groupBy("person_id")
            .agg(ranked.alias("_ranked"), F.max("model_version").cast("int").alias(f"{prefix}_model_version"))
            .select("person_id",
                    F.transform("_ranked", lambda r: F.struct(r["category"].alias("category"),
                                                              r["affinity"].alias("affinity")))
                    .alias(f"{prefix}_top_categories"),
                    F.col("_ranked")[0]["category"].alias(f"{prefix}_top_category"),
                    f"{prefix}_model_version"))


# Product and content affinity: the ranked item's column in gold and its profile list's name.
RANKED_ITEMS = {"sku": "top_skus", "section": "top_sections"}


def ranked_item_attributes(item: str) -> Callable[[DataFrame, str], DataFrame]:
    """Top products or sections of one date (a row per person and rank) -> person_id,
    `<prefix>_top_skus` or `<prefix>_top_sections` (item and score, best first) and
    `<prefix>_model_version`."""
    def _build(rows: DataFrame, prefix: str) -> DataFrame:
        ranked = F.sort_array(F.collect_list(F.struct("rank", item, "score")))
        return (rows.groupBy("person_id")
                .agg(ranked.alias("_ranked"), F.max("model_version").cast("int").alias(f"{prefix}_model_version"))
                .select("person_id",
                        F.transform("_ranked", lambda r: F.struct(r[item].alias(item), r["score"].alias("score")))
                        .alias(f"{prefix}_{RANKED_ITEMS[item]}"),
                        f"{prefix}_model_version"))
    return _build


def segment_attributes(rows: DataFrame, prefix: str) -> DataFrame:
    """Segments of one date -> person_id, `<prefix>_id`, `<prefix>_name`, `<prefix>_model_version`."""
    return rows.select("person_id", F.col("segment_id").cast("int").alias(f"{prefix}_id"),
                       F.col("segment_name").alias(f"{prefix}_name"),
                       F.col("model_version").cast("int").alias(f"{prefix}_model_version"))


# A custom regressor's columns, under its prefix (spend_prediction, spend_percentile, ...).
PREDICTION_FIELDS = (("prediction", T.DoubleType()), ("percentile", T.IntegerType()), ("bucket", T.StringType()),
                     ("model_version", T.IntegerType()))


def prediction_attributes(rows: DataFrame, prefixes: Mapping[str, str]) -> DataFrame:
    """Predictions of one date (a row per person and model; `prefixes` maps model_name to
    its profile prefix) -> person_id and `<prefix>_prediction`, `_percentile`, `_bucket`,
    `_model_version` per regressor."""
    return rows.groupBy("person_id").agg(*[
        F.max(F.when(F.col("model_name") == F.lit(name), F.col(column))).cast(kind).alias(f"{prefix}_{column}")
        for name, prefix in prefixes.items() for column, kind in PREDICTION_FIELDS])


def insight_columns(kind: str, prefix: str) -> list[str]:
    """The profile columns one insight writes, by its kind: `propensity` (classifiers),
    `prediction` (custom regressors), `lifetime_value`, `affinity`, `segments`, and the
    ranked items of `product_affinity` and `content_affinity`."""
    names = {"propensity": [name for name, _ in MODEL_FIELDS],
             "prediction": [name for name, _ in PREDICTION_FIELDS],
             "lifetime_value": [name for name, _ in VALUE_FIELDS] + ["currency"],
             "affinity": ["top_categories", "top_category", "model_version"],
             "product_affinity": [RANKED_ITEMS["sku"], "model_version"],
             "content_affinity": [RANKED_ITEMS["section"], "model_version"],
             "segments": ["id", "name", "model_version"]}[kind]
    return [f"{prefix}_{name}" for name in names]


def nullable_everywhere(data_type: T.DataType) -> T.DataType:
    """`data_type` with every array element, map value and struct field nullable. Spark
    declares `collect_list`'s elements non-null in the table's schema while its Parquet files
    declare them optional; other engines (delta-rs, Polars, DuckDB) then refuse to read the
    change feed, so the profile table declares them nullable, as its files do."""
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(nullable_everywhere(data_type.elementType), True)
    if isinstance(data_type, T.MapType):
        return T.MapType(data_type.keyType, nullable_everywhere(data_type.valueType), True)
    if isinstance(data_type, T.StructType):
        return T.StructType([T.StructField(f.name, nullable_everywhere(f.dataType), True, f.metadata)
                             for f in data_type.fields])
    return data_type


def attribute_fields(attributes: Sequence[DataFrame]) -> list[T.StructField]:
    # Nullable whatever the frame says: a person an insight does not cover has nulls there.
    return [T.StructField(f.name, nullable_everywhere(f.dataType), True) for frame in attributes
            for f in frame.schema.fields if f.name != KEY]


@dataclass(frozen=True)
class RunStamp:
    """When and by which run the profile rows of a night were made."""
    score_date: date
    scored_at: datetime
    run_id: str


def profile_rows(scores: DataFrame, primary_identities: DataFrame, prefixes: Mapping[str, str],
                 attributes: Sequence[DataFrame], stamp: RunStamp) -> DataFrame:
    """Scores of one date (a row per person and model; `prefixes` maps model_name to its
    profile prefix), other insights (`attributes`: frames of person_id and ready-named
    columns) and each person's primary identity -> one row per person any of them covers,
    in the profile table's shape. An insight that has nothing for a person (not eligible)
    leaves its columns null."""
    per_model = [F.max(F.when(F.col("model_name") == F.lit(name), F.col(column))).cast(kind).alias(f"{prefix}_{column}")
                 for name, prefix in prefixes.items() for column, kind in MODEL_FIELDS]
    wide = scores.groupBy("person_id").agg(*per_model) if per_model else scores.select("person_id").distinct()
    # Everyone an insight covers tonight, by full joins of frames of a row per person: a
    # night whose propensities were all skipped still publishes lifetime values, segments
    # and engagement, and each gold table is read once (a separate list of everyone's ids
    # read every table twice).
    joined = (reduce(lambda left, right: left.join(right, "person_id", "full"), [wide, *attributes])
              .join(primary_identities, "person_id", "left"))
    joined = (joined.withColumn("score_date", F.lit(stamp.score_date).cast("date"))
              .withColumn("as_of_date", F.lit(stamp.score_date).cast("date"))
              .withColumn("scored_at", F.lit(stamp.scored_at).cast("timestamp"))
              .withColumn("run_id", F.lit(stamp.run_id))
              .withColumn("expired_on", F.lit(None).cast("date")))   # freshly scored
    schema = profile_schema(list(prefixes.values()), attribute_fields(attributes))
    return joined.select(*[f.name for f in schema.fields])


def kept_from_the_table(rows: DataFrame, table: DataFrame, columns: Sequence[str]) -> DataFrame:
    """`rows` whose `columns` hold what the table holds for each person (null for people it
    does not have yet): the columns of an insight skipped tonight keep their last values."""
    if not columns:
        return rows
    current = table.select(KEY, *[F.col(c).alias(f"_kept_{c}") for c in columns])
    kept = rows.join(current, KEY, "left")
    for column in columns:
        kept = kept.withColumn(column, F.col(f"_kept_{column}"))
    return kept.select(*rows.columns)


def ensure_table(spark: SparkSession, path: str, schema: T.StructType, change_data_feed: bool) -> DeltaTable:
    """The profile table, created on first use; columns of newly configured models are added."""
    # Statistics on the key and date only: the primary identity is personal (see lakehouse.STATS_ONLY_ON).
    builder = (DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
               .property("delta.dataSkippingStatsColumns", f"{KEY},{ORDER}"))
    if change_data_feed:
        builder = builder.property("delta.enableChangeDataFeed", "true")
    table = builder.execute()
    present = set(table.toDF().columns)
    missing = [f for f in schema.fields if f.name not in present]
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})")
        table = DeltaTable.forPath(spark, path)
    return table


def aligned(rows: DataFrame, table_schema: T.StructType) -> DataFrame:
    """`rows` with the table's columns in its order; columns of models no longer configured
    are null, so a MERGE of all columns clears what no model writes any more."""
    present = set(rows.columns)
    return rows.select(*[F.col(f.name) if f.name in present else F.lit(None).cast(f.dataType).alias(f.name)
                         for f in table_schema.fields])


def _differs(columns: Sequence[str]) -> str:
    return " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in columns)


def merge_profiles(table: DeltaTable, rows: DataFrame, expire_before: date | None = None,
                   expired_on: date | None = None) -> None:
    """Newer score date wins; the same date updates only changed rows; new people are inserted.
    With `expire_before`, people absent from `rows` whose scores are older than it get
    their attributes cleared and `expired_on` set (once). `rows` has the table's columns
    (see `aligned`)."""
    attributes = [c for c in rows.columns if c != KEY]
    newer = f"s.{ORDER} > t.{ORDER} OR (s.{ORDER} = t.{ORDER} AND ({_differs(attributes)}))"
    merge = (table.alias("t")
             .merge(rows.alias("s"), f"t.{KEY} = s.{KEY}")
             .whenMatchedUpdateAll(condition=newer)
             .whenNotMatchedInsertAll())
    if expire_before is not None:
        cleared = {f"`{c}`": F.lit(None) for c in rows.columns if c not in KEPT_ON_EXPIRY}
        merge = merge.whenNotMatchedBySourceUpdate(
            condition=f"t.{ORDER} < date'{expire_before.isoformat()}' AND t.expired_on IS NULL",
            set={**cleared, "expired_on": F.lit(expired_on or expire_before).cast("date")})
    merge.execute()
