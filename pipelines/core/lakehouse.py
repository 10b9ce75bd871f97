"""Thin Delta Lake I/O used by every step: read, replace a partition, merge, versions.

Each write is one Delta transaction, so a failed step leaves no partial table behind.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import pyspark.sql.functions as F
from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from pipelines.core.errors import BadInputError


def exists(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def read(spark: SparkSession, path: str, name: str | None = None) -> DataFrame:
    """Read a Delta table, or fail with a message that names the step that writes it."""
    if not exists(spark, path):
        hint = f" (run `enrich {name}` first)" if name else ""
        raise BadInputError(f"table not found: {path}{hint}")
    return spark.read.format("delta").load(path)


def version(spark: SparkSession, path: str) -> int | None:
    """Current Delta version of a table, None when it does not exist yet."""
    if not exists(spark, path):
        return None
    # The log's refreshed snapshot, not history(1): the history is a DataFrame and a Spark job,
    # ten times slower a call, and a night asks for about forty versions. `update`'s
    # defaults are Scala default arguments, which Py4J reaches by their JVM names.
    log = DeltaTable.forPath(spark, path)._jdt.deltaLog()
    defaults = [getattr(log, f"update$default${n}")() for n in (1, 2, 3)]
    return log.update(*defaults).version()


def last_commit(spark: SparkSession, path: str) -> tuple[int, dict[str, int]]:
    """The table's current version and the operation metrics its commit recorded (rows
    inserted, updated, deleted...), read from that commit's file in `_delta_log/`.

    Not history(1), which is a DataFrame and a Spark job: a step asks after each write. The
    commit file is the Delta protocol's own record; its `commitInfo` action holds the metrics.
    """
    current = version(spark, path)
    if current is None:
        raise BadInputError(f"table not found: {path}")
    return current, commit_metrics(spark, path, current)


def commit_metrics(spark: SparkSession, path: str, at: int) -> dict[str, int]:
    """The operation metrics version `at` of the table recorded in its commit file."""
    text = read_text(spark, f"{path.rstrip('/')}/_delta_log/{at:020d}.json")
    for line in text.splitlines():
        action = json.loads(line)
        if "commitInfo" in action:
            metrics = action["commitInfo"].get("operationMetrics") or {}
            return {name: int(value) for name, value in metrics.items()}
    raise RuntimeError(f"no commitInfo in version {at} of the Delta log of {path}")


def rows_changed(spark: SparkSession, path: str, before: int | None,
                 metrics: Sequence[str]) -> tuple[int | None, int]:
    """The rows a write after version `before` recorded under the first of `metrics` its
    commit holds (None when it holds none of them), and the table's version now. 0 when no
    commit came after `before`: an earlier commit's count is never taken for this write's."""
    version, recorded = last_commit(spark, path)
    if before is not None and version == before:
        return 0, version
    return next((recorded[name] for name in metrics if name in recorded), None), version


def _writer(df: DataFrame, mode: str, partition_by: Sequence[str]):
    """A Delta writer that gives each partition value files of Delta's optimized-write bin
    size (`spark.databricks.delta.optimizeWrite.binSize`), not one file per task.

    Shuffling the rows by the partition column instead sends a whole night (one score date)
    to one task: a single core would write every person's rows however large the cluster.
    The optimized write spreads a value's rows over several shuffle partitions and writes
    one file per bin, so a large night is written by many tasks and a small one still
    makes one file."""
    if not partition_by:
        return df.write.format("delta").mode(mode)
    return df.write.format("delta").mode(mode).option("optimizeWrite", "true").partitionBy(*partition_by)


# Delta keeps each file's minimum and maximum of the first 32 columns in its log, which
# VACUUM never reaches: a table holding personal values (identities, names, quality
# samples) collects statistics on these columns only.
STATS_ONLY_ON = "delta.dataSkippingStatsColumns"


def stats_on(*columns: str) -> dict[str, str]:
    """Table properties: statistics on `columns` alone (see STATS_ONLY_ON)."""
    return {STATS_ONLY_ON: ",".join(columns)}


def overwrite(df: DataFrame, path: str, partition_by: Sequence[str] = (),
              properties: Mapping[str, str] | None = None) -> None:
    """Replace the whole table in one transaction (schema follows the frame); `properties`
    are set when the table is created."""
    writer = _writer(df, "overwrite", partition_by).option("overwriteSchema", "true")
    if not exists(df.sparkSession, path):
        writer = writer.options(**(properties or {}))
    writer.save(path)


def replace_where(df: DataFrame, path: str, condition: str, partition_by: Sequence[str] = (),
                  merge_schema: bool = False) -> None:
    """Atomically replace the rows matching `condition` (a partition) and keep the rest;
    `merge_schema` lets the table gain columns a later release writes."""
    writer = _writer(df, "overwrite", partition_by)
    if exists(df.sparkSession, path):
        writer = writer.option("replaceWhere", condition)
        if merge_schema:
            writer = writer.option("mergeSchema", "true")
    writer.save(path)


def append(df: DataFrame, path: str, partition_by: Sequence[str] = (), merge_schema: bool = False,
           properties: Mapping[str, str] | None = None) -> None:
    """Append rows; `merge_schema` lets a log table gain columns added in a later release;
    `properties` are set when the table is created."""
    writer = _writer(df, "append", partition_by)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if properties and not exists(df.sparkSession, path):
        writer = writer.options(**properties)
    writer.save(path)


# A batch this small or smaller is checked against the table by sending its keys to every
# task (tens of megabytes at most) rather than by MERGE, which shuffles the whole table's keys.
SMALL_BATCH_ROWS = 1_000_000


def insert_new(df: DataFrame, path: str, keys: Sequence[str], partition_by: Sequence[str] = (),
               properties: Mapping[str, str] | None = None, batch_rows: int | None = None) -> None:
    """Insert the rows whose `keys` are not in the table yet; existing rows stay.

    Creates the table on first use, with `properties` (e.g. the change feed). The frame must
    already be unique on `keys`. Columns new to the table are added to it (rows written
    before hold null in them), so a release that derives more columns extends old tables.

    A MERGE joins the batch to the table by shuffling both; a night's batch against years
    of rows paid to shuffle every key of the table. With `batch_rows` (an upper bound on the
    frame's rows) at most SMALL_BATCH_ROWS, the batch's keys go to every task instead, the
    table's keys are read once without a shuffle, and the new rows are appended: one commit,
    as the MERGE's, and as exactly-once under the run lock (a rerun finds them present). An
    empty batch (`batch_rows` 0) of an existing table commits nothing.
    """
    spark = df.sparkSession
    if not exists(spark, path):
        _writer(df, "overwrite", partition_by).options(**(properties or {})).save(path)
        return
    if batch_rows == 0:
        return   # nothing to insert: no commit
    if batch_rows is not None and batch_rows <= SMALL_BATCH_ROWS:
        batch = df.persist(StorageLevel.MEMORY_AND_DISK)   # read for its keys, then for its rows
        try:
            present = (read(spark, path).select(*keys)
                       .join(F.broadcast(batch.select(*keys)), list(keys), "left_semi"))
            append(batch.join(F.broadcast(present), list(keys), "left_anti"), path, partition_by, merge_schema=True)
        finally:
            batch.unpersist()
        return
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(df.alias("s"), condition)
     .whenNotMatchedInsertAll()
     .withSchemaEvolution()
     .execute())


def file_system(spark: SparkSession, path: str):
    """Hadoop's file system for `path` and the path as Hadoop's (local paths and URIs alike)."""
    hadoop_path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def folder_exists(spark: SparkSession, path: str) -> bool:
    """Whether a folder (or file) exists."""
    fs, hadoop_path = file_system(spark, path)
    return bool(fs.exists(hadoop_path))


def write_bytes(spark: SparkSession, path: str, data: bytes, overwrite: bool = True) -> None:
    """One small file through Hadoop's file system, so object-store paths work too; its
    folders are made as needed. Without `overwrite`, an existing file raises (the JVM's
    FileAlreadyExistsException; FileExistsError for a local path)."""
    if "://" not in path:
        # Hadoop's local file system would leave a checksum file beside each one.
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb" if overwrite else "xb") as handle:
            handle.write(data)
        return
    fs, target = file_system(spark, path)
    stream = fs.create(target, overwrite)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def write_text(spark: SparkSession, path: str, text: str, overwrite: bool = True) -> None:
    """`write_bytes` of `text` in UTF-8."""
    write_bytes(spark, path, text.encode("utf-8"), overwrite)


def file_size(spark: SparkSession, path: str) -> int | None:
    """A file's length in bytes; None when there is no file there."""
    fs, target = file_system(spark, path)
    if not fs.exists(target):
        return None
    status = fs.getFileStatus(target)
    return int(status.getLen()) if status.isFile() else None


def files_under(spark: SparkSession, path: str) -> list[str]:
    """The paths, relative to `path`, of the files anywhere under a folder ([] when it does
    not exist). For folders of reports and documents, not of data: the list is the driver's."""
    fs, folder = file_system(spark, path)
    if not fs.exists(folder):
        return []
    base = fs.makeQualified(folder).toUri().getPath().rstrip("/") + "/"
    listing, found = fs.listFiles(folder, True), []
    while listing.hasNext():
        found.append(listing.next().getPath().toUri().getPath()[len(base):])
    return found


def delete_file(spark: SparkSession, path: str) -> bool:
    """Delete one file; whether there was one."""
    fs, target = file_system(spark, path)
    return bool(fs.delete(target, False))


def move_file(spark: SparkSession, source: str, target: str) -> bool:
    """Rename one file (its new folder is made as needed); whether it existed."""
    fs, source_path = file_system(spark, source)
    if not fs.exists(source_path):
        return False
    _, target_path = file_system(spark, target)
    fs.mkdirs(target_path.getParent())
    return bool(fs.rename(source_path, target_path))


def folder_entries(spark: SparkSession, path: str) -> list[str] | None:
    """The names directly in a folder; None when it does not exist."""
    fs, folder = file_system(spark, path)
    if not fs.exists(folder):
        return None
    return [status.getPath().getName() for status in fs.listStatus(folder)]


def qualified(spark: SparkSession, path: str) -> str:
    """A path as Hadoop's file system names it in full (scheme, authority, absolute path)."""
    fs, target = file_system(spark, path)
    return fs.makeQualified(target).toString().rstrip("/")


def read_text(spark: SparkSession, path: str) -> str:
    """One small text file, byte for byte, in one call (the counterpart of `write_text`)."""
    fs, target = file_system(spark, path)
    stream = fs.open(target)
    try:
        return spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()
