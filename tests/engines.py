"""What another Delta engine (delta-rs) reads of a table, beside what Spark reads."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from pipelines.core import lakehouse


def comparable(value):
    """A cell as plain Python, whichever engine read it (Spark Rows, Arrow lists of dicts)."""
    if hasattr(value, "asDict"):
        value = value.asDict(recursive=True)
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [comparable(v) for v in value]
    if isinstance(value, float) and value != value:
        return "NaN"   # equal to itself, unlike NaN
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: json.dumps(row, default=str, sort_keys=True))


def rows_read_by_both(spark: SparkSession, path: str, delta_rs_table) -> tuple[list[dict], list[dict]]:
    """Every row of the table at `path` as Spark reads it and as delta-rs does, in one order."""
    ours = [{k: comparable(v) for k, v in row.asDict().items()} for row in lakehouse.read(spark, path).collect()]
    theirs = [{k: comparable(v) for k, v in row.items()} for row in delta_rs_table.to_pyarrow_table().to_pylist()]
    return _sorted(ours), _sorted(theirs)


def change_feeds_read_by_both(spark: SparkSession, path: str, delta_rs_table,
                              columns: tuple[str, ...]) -> tuple[list[tuple], list[tuple]]:
    """The change feed from version 0 (`columns` and the change's kind and version), as Spark
    and delta-rs read it. Versions whose MERGE rewrote files without changing a row (a rerun
    of the night) have no change data files: Spark's feed shows nothing for them, delta-rs
    infers every copied row as deleted and inserted; only the versions that changed rows
    are compared."""
    import pyarrow as pa

    picked = ("_change_type", "_commit_version", *columns)
    feed = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(path)
            .select(*picked))
    ours = sorted(tuple(comparable(row[c]) for c in picked) for row in feed.collect())
    changed = {row[1] for row in ours}
    theirs = sorted(tuple(comparable(row[c]) for c in picked)
                    for row in pa.table(delta_rs_table.load_cdf(starting_version=0).read_all()).to_pylist()
                    if row["_commit_version"] in changed)
    return ours, theirs
