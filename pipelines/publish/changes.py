"""What changed in gold/profile_enrichment after a table version, from its Change Data Feed.

A downstream system (the profile store, a reverse-ETL tool) remembers the version it
last took and asks for the rest: each changed person once, in their latest state, so it
applies increments instead of reloading the whole table.
"""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession, Window

from pipelines.core import lakehouse
from pipelines.core.errors import BadInputError
from pipelines.publish.profile_table import KEY

CHANGE = "change"                 # insert / update / delete
TABLE_VERSION = "table_version"   # the version that made the change


def changes_since(spark: SparkSession, path: str, since_version: int) -> tuple[DataFrame, int]:
    """(each person changed in versions since_version+1 .. latest, in their latest state; the
    latest version). Empty when nothing was committed after `since_version`."""
    latest = lakehouse.version(spark, path)
    if latest is None:
        raise BadInputError(f"table not found: {path} (run `enrich publish` first)")
    if since_version >= latest:
        current = lakehouse.read(spark, path).limit(0)
        return current.select("*", F.lit(None).cast("string").alias(CHANGE),
                              F.lit(None).cast("long").alias(TABLE_VERSION)), latest
    try:
        feed = (spark.read.format("delta").option("readChangeFeed", "true")
                .option("startingVersion", since_version + 1).load(path))
        # Delta checks that every version in the range has change data when it plans the
        # scan, not when the frame is defined: plan it now, before anything is written.
        feed._jdf.queryExecution().executedPlan()
    except AnalysisException as err:
        first = str(err).strip().splitlines()[0]
        raise BadInputError(f"{path} has no change feed for versions {since_version + 1}..{latest} "
                            f"(publish.change_data_feed off then, or the history vacuumed): {first}") from err
    last = Window.partitionBy(KEY).orderBy(F.col("_commit_version").desc())
    return (feed.where(F.col("_change_type") != "update_preimage")
            .withColumn("_latest", F.row_number().over(last))
            .where(F.col("_latest") == 1)
            .select(*[c for c in feed.columns if not c.startswith("_")],
                    F.regexp_replace("_change_type", "_postimage", "").alias(CHANGE),
                    F.col("_commit_version").alias(TABLE_VERSION))), latest
