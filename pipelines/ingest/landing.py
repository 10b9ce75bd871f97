"""The landing folder: which files are there, which are new, and their records as raw bytes.

A file is read once: `ops/ingested_files` remembers every file ingest has finished with
(path, size, modification time), and only files not in it are read. The file list is the
one thing taken to the driver; it grows with the number of files, not with their content.

Formats, by content rather than name, so an export's naming never matters:
* Parquet (`*.parquet`);
* JSON lines, plain or compressed with any codec Hadoop knows (`.gz`, `.bz2`, ...);
* a JSON array per file (first character `[`), read whole: one task per file, so such
  files must stay under `ingest.max_json_array_bytes`; large exports belong in JSON lines
  or Parquet, which Spark splits;
* one JSON object per file, written over several lines (the XDM specification's own
  examples): its first line is not a whole JSON value; read whole, under the same limit.
Each record comes out as `_raw` (its bytes) and `_source_file`; a JSON array file that
does not parse comes out as one record with `_file_error` set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import pyspark.sql.functions as F
from py4j.protocol import Py4JJavaError
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import types as T

from pipelines.core.errors import BadInputError

RAW = "_raw"
SOURCE_FILE = "_source_file"
FILE_ERROR = "_file_error"

JSON_LINES, JSON_ARRAY, JSON_DOCUMENT, PARQUET = "json_lines", "json_array", "json_document", "parquet"
# Read whole, one task per file: held to ingest.max_json_array_bytes.
WHOLE_FILE = (JSON_ARRAY, JSON_DOCUMENT)
# A first line longer than this is taken as a record of a JSON lines file.
FIRST_LINE_LIMIT = 1 << 20
CHUNK_BYTES = 1 << 16
REASON_BAD_ARRAY = "not a JSON array: the file does not parse as one (truncated, or not JSON)"
REASON_UNREADABLE = "unreadable file"

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


def _first_line(spark: SparkSession, fs, path) -> tuple[str, bool]:
    """The file's first non-blank line (decompressed if its codec says so), read in chunks,
    and whether it is whole: a line running past FIRST_LINE_LIMIT comes back cut there."""
    jvm = spark.sparkContext._jvm
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(fs.getConf()).getCodec(path)
    stream = fs.open(path)
    head = b""
    try:
        if codec is not None:
            stream = codec.createInputStream(stream)
        while len(head) < FIRST_LINE_LIMIT:
            # A chunk comes back as bytes in one call (a byte per call would cost a round trip each).
            try:
                chunk = bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(
                    jvm.org.apache.commons.io.input.BoundedInputStream(stream, CHUNK_BYTES)))
            except Py4JJavaError:
                # Cut short (a truncated gzip): judged by what was read; reading the file whole
                # meets the same error, and ingest quarantines the file with it.
                return head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n"), False
            if not chunk:
                return head.decode("utf-8", errors="replace").strip("\ufeff \t\r\n"), True
            head += chunk
            text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
            if "\n" in text:
                return text.split("\n", 1)[0].rstrip("\r"), True
        return head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n"), False
    finally:
        stream.close()


def _json_kind(spark: SparkSession, fs, path) -> str:
    """JSON_ARRAY, JSON_DOCUMENT or JSON_LINES, from the file's first line: `[` starts an
    array; a first line that is `{` but not a whole JSON value starts one object over
    several lines; anything else is JSON lines."""
    line, whole = _first_line(spark, fs, path)
    if line.startswith("["):
        return JSON_ARRAY
    if line.startswith("{") and whole:
        try:
            json.loads(line)
        except ValueError:
            return JSON_DOCUMENT
    return JSON_LINES


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
            kind = _json_kind(spark, fs, path)
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


def _json_documents(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """Each file one record: its whole text (the normaliser names it if it is not JSON)."""
    return spark.read.text(list(paths), wholetext=True).select(
        F.col("value").cast("binary").alias(RAW), canonical_path(F.col("_metadata.file_path")).alias(SOURCE_FILE),
        F.lit(None).cast("string").alias(FILE_ERROR))


def _parquet(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    # Rows become JSON text so Parquet takes the same path as JSON: both XDM forms, rescued
    # fields and type checks are handled once.
    rows = spark.read.option("mergeSchema", "true").parquet(*paths)
    fields = [F.col(f"`{name}`") for name in rows.columns]
    return rows.select(F.to_json(F.struct(*fields)).cast("binary").alias(RAW),
                       canonical_path(F.col("_metadata.file_path")).alias(SOURCE_FILE),
                       F.lit(None).cast("string").alias(FILE_ERROR))


def unreadable(spark: SparkSession, files: Sequence[LandingFile]) -> dict[str, str]:
    """The files among `files` that cannot be read to their end (a truncated gzip, a corrupt
    Parquet footer), each with the error: read on the driver, file by file, so it is only
    called once a batch's read has failed."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    broken = {}
    for file in files:
        path = jvm.org.apache.hadoop.fs.Path(file.path)
        fs = path.getFileSystem(conf)
        try:
            if file.format == PARQUET:
                spark.read.parquet(file.path).count()
                continue
            codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(path)
            stream = fs.open(path)
            try:
                stream = codec.createInputStream(stream) if codec is not None else stream
                stream.transferTo(jvm.java.io.OutputStream.nullOutputStream())
            finally:
                stream.close()
        except Exception as err:   # the file's own read error: it is the finding, kept with the file
            text = str(err).strip().splitlines()
            cause = next((line for line in text if "Exception:" in line), text[0] if text else repr(err))
            broken[file.path] = cause.split("Exception:", 1)[-1].strip() or cause
    return broken


def read_raw(spark: SparkSession, files: Sequence[LandingFile], max_array_bytes: int,
             broken: dict[str, str] | None = None) -> DataFrame:
    """The records of `files` as (`_raw`, `_source_file`, `_file_error`); each of the
    `broken` files (path -> error) is one record with its error, and is not read."""
    broken = broken or {}
    unreadable_rows = spark.createDataFrame(
        [(b"", path, f"{REASON_UNREADABLE}: {error}") for path, error in sorted(broken.items())], RAW_SCHEMA)
    files = [f for f in files if f.path not in broken]
    oversized = [f for f in files if f.format in WHOLE_FILE and f.size > max_array_bytes]
    if oversized:
        raise BadInputError(
            f"{oversized[0].path}: a JSON {'array' if oversized[0].format == JSON_ARRAY else 'document'} file of "
            f"{oversized[0].size} bytes is over ingest.max_json_array_bytes={max_array_bytes}; export it as JSON "
            "lines or Parquet")
    readers = {JSON_LINES: _json_lines, JSON_ARRAY: _json_arrays, JSON_DOCUMENT: _json_documents, PARQUET: _parquet}
    frames = [readers[kind](spark, [f.path for f in files if f.format == kind])
              for kind in readers if any(f.format == kind for f in files)]
    combined = unreadable_rows
    for frame in frames:
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
