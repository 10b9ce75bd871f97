"""The landing folder: which files are there, which are new, and their records as raw bytes.

A file is read once: `ops/ingested_files` remembers every file ingest has finished with
(path, size, modification time), and only files not in it are read. The file list is the
one thing taken to the driver; it grows with the number of files, not with their content.

Formats, by content rather than name, so an export's naming never matters:
* Parquet (`*.parquet`);
* JSON lines, plain or compressed with any codec Hadoop knows (`.gz`, `.bz2`, ...);
* a JSON array per file (first character `[`), read whole: one task per file, so such
  files must stay under `ingest.max_json_array_bytes`; large exports belong in JSON lines
  or Parquet, which Spark splits.
Each record comes out as `_raw` (its bytes) and `_source_file`; a JSON array file that
does not parse comes out as one record with `_file_error` set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import pyspark.sql.functions as F
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import types as T

from pipelines.core.errors import BadInputError

RAW = "_raw"
SOURCE_FILE = "_source_file"
FILE_ERROR = "_file_error"

JSON_LINES, JSON_ARRAY, PARQUET = "json_lines", "json_array", "parquet"
REASON_BAD_ARRAY = "not a JSON array: the file does not parse as one (truncated, or not JSON)"

RAW_SCHEMA = T.StructType([
    T.StructField(RAW, T.BinaryType()),
    T.StructField(SOURCE_FILE, T.StringType()),
    T.StructField(FILE_ERROR, T.StringType()),
])


@dataclass(frozen=True)
class LandingFile:
    path: str
    size: int
    modified_at: datetime
    format: str


def canonical_path(path: Column | str) -> Column | str:
    """One spelling per local file (`file:/x`, `file:///x` -> `file:///x`), so the listing,
    `_metadata.file_path` and the ledger agree."""
    if isinstance(path, str):
        return "file:///" + path[len("file:"):].lstrip("/") if path.startswith("file:") else path
    return F.regexp_replace(path, "^file:/+", "file:///")


def _hadoop(spark: SparkSession, folder: str):
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(folder)
    return jvm, conf, path, path.getFileSystem(conf)


def _first_character(jvm, conf, fs, path) -> str:
    """The first non-blank character of a file, decompressed if its codec says so."""
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(path)
    stream = fs.open(path)
    try:
        if codec is not None:
            stream = codec.createInputStream(stream)
        for _ in range(4096):
            byte = stream.read()
            if byte < 0:
                return ""
            char = chr(byte)
            if not char.isspace() and byte not in (0xEF, 0xBB, 0xBF):  # skip a UTF-8 byte-order mark
                return char
        return ""
    finally:
        stream.close()


def list_files(spark: SparkSession, folder: str) -> list[LandingFile]:
    """Every data file under `folder` (recursively), skipping `_`/`.` names as Spark does."""
    jvm, conf, root, fs = _hadoop(spark, folder)
    if not fs.exists(root):
        return []
    found = []
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        status = listing.next()
        path = status.getPath()
        if path.getName().startswith(("_", ".")):
            continue
        if path.getName().endswith(".parquet"):
            kind = PARQUET
        else:
            kind = JSON_ARRAY if _first_character(jvm, conf, fs, path) == "[" else JSON_LINES
        modified = datetime.fromtimestamp(status.getModificationTime() / 1000, timezone.utc).replace(tzinfo=None)
        found.append(LandingFile(canonical_path(path.toString()), status.getLen(), modified, kind))
    return sorted(found, key=lambda f: f.path)


def _json_lines(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    lines = spark.read.text(list(paths))
    return (lines.where(F.trim(F.col("value")) != "")
            .select(F.col("value").cast("binary").alias(RAW),
                    canonical_path(F.col("_metadata.file_path")).alias(SOURCE_FILE),
                    F.lit(None).cast("string").alias(FILE_ERROR)))


def _json_arrays(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    files = spark.read.text(list(paths), wholetext=True).select(
        F.col("value"), canonical_path(F.col("_metadata.file_path")).alias(SOURCE_FILE))
    # Each element as its own JSON text: a string schema keeps objects as text.
    elements = files.withColumn("elements", F.from_json("value", T.ArrayType(T.StringType())))
    good = elements.where(F.col("elements").isNotNull()).select(
        F.explode("elements").alias("element"), SOURCE_FILE)
    bad = elements.where(F.col("elements").isNull() & (F.trim("value") != ""))
    return (good.select(F.col("element").cast("binary").alias(RAW), SOURCE_FILE,
                        F.lit(None).cast("string").alias(FILE_ERROR))
            .unionByName(bad.select(F.col("value").cast("binary").alias(RAW), SOURCE_FILE,
                                    F.lit(REASON_BAD_ARRAY).alias(FILE_ERROR))))


def _parquet(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    # Rows become JSON text so Parquet takes the same path as JSON: both XDM forms, rescued
    # fields and type checks are handled once.
    rows = spark.read.option("mergeSchema", "true").parquet(*paths)
    fields = [F.col(f"`{name}`") for name in rows.columns]
    return rows.select(F.to_json(F.struct(*fields)).cast("binary").alias(RAW),
                       canonical_path(F.col("_metadata.file_path")).alias(SOURCE_FILE),
                       F.lit(None).cast("string").alias(FILE_ERROR))


def read_raw(spark: SparkSession, files: Sequence[LandingFile], max_array_bytes: int) -> DataFrame:
    """The records of `files` as (`_raw`, `_source_file`, `_file_error`)."""
    oversized = [f for f in files if f.format == JSON_ARRAY and f.size > max_array_bytes]
    if oversized:
        raise BadInputError(
            f"{oversized[0].path}: a JSON array file of {oversized[0].size} bytes is over "
            f"ingest.max_json_array_bytes={max_array_bytes}; export it as JSON lines or Parquet")
    readers = {JSON_LINES: _json_lines, JSON_ARRAY: _json_arrays, PARQUET: _parquet}
    frames = [readers[kind](spark, [f.path for f in files if f.format == kind])
              for kind in readers if any(f.format == kind for f in files)]
    if not frames:
        return spark.createDataFrame([], RAW_SCHEMA)
    combined = frames[0]
    for frame in frames[1:]:
        combined = combined.unionByName(frame)
    return combined


INGESTED_FILES = T.StructType([
    T.StructField("kind", T.StringType()),
    T.StructField("path", T.StringType()),
    T.StructField("size_bytes", T.LongType()),
    T.StructField("modified_at", T.TimestampType()),
    T.StructField("format", T.StringType()),
    T.StructField("records", T.LongType()),
    T.StructField("run_id", T.StringType()),
    T.StructField("run_date", T.DateType()),
])


def file_key(kind: str, path: str, size: int, modified_at: datetime) -> tuple:
    return kind, path, int(size), modified_at.replace(microsecond=0)


def new_files(spark: SparkSession, ledger_path: str, kind: str, files: Sequence[LandingFile]) -> list[LandingFile]:
    """The files not ingested yet; a file rewritten in place (new size or time) counts as new."""
    if not files or not DeltaTable.isDeltaTable(spark, ledger_path):
        return list(files)
    seen = {file_key(r["kind"], r["path"], r["size_bytes"], r["modified_at"]) for r in
            spark.read.format("delta").load(ledger_path).where(F.col("kind") == kind)
            .select("kind", "path", "size_bytes", "modified_at").collect()}
    return [f for f in files if file_key(kind, f.path, f.size, f.modified_at) not in seen]


def ledger_rows(spark: SparkSession, kind: str, files: Sequence[LandingFile], records: dict[str, int],
                run_id: str, run_date) -> DataFrame:
    """One `ops/ingested_files` row per file read this run, with its record count."""
    rows = [(kind, f.path, f.size, f.modified_at.replace(microsecond=0), f.format, records.get(f.path, 0),
             run_id, run_date) for f in files]
    return spark.createDataFrame(rows, INGESTED_FILES)
