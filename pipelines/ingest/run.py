"""The ingest step: new landing files -> bronze (merge on _id) + quarantine -> silver.

Exactly once: only files missing from `ops/ingested_files` are read, and they are added to
it after their records are in bronze and quarantine. A run killed before that reads the
same files again; bronze and quarantine are insert-only MERGEs on their keys, so the
tables end up as one clean run leaves them.

Accounting, per run and kind, in the run ledger:
records_in == inserted + already_present + batch_duplicates + quarantined.

Silver follows bronze through Delta's change feed: the identity graph records the bronze
versions it has taken in, and each run resolves only the records inserted since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Callable, Sequence

import pyspark.sql.functions as F
from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from pipelines.core import lakehouse
from pipelines.core.errors import BadInputError
from pipelines.ingest import landing
from pipelines.identity.graph import GRAPH_COLUMNS, IdentityRules, resolve, resolved_person
from pipelines.ingest.landing import SOURCE_FILE
from pipelines.ingest.parse import (REASON, bad_records, flag_records, good_records, later_repeats, parse_records,
                                    profile_fragments, quarantine_rows, reason_kind, register_normaliser,
                                    with_event_time, without)
from pipelines.ingest.silver import flatten_events, merge_profile_fragments
from pipelines.core.context import RunContext
from pipelines.xdm.identity_map import namespace_codes
from pipelines.xdm.schema import EXPERIENCE_EVENT, INDIVIDUAL_PROFILE

CDF = {"delta.enableChangeDataFeed": "true"}
SYNCED_PROPERTY = "enrich.synced_version."


@dataclass(frozen=True)
class BronzeKind:
    """How one kind of landing record becomes its bronze table."""

    name: str                      # the landing folder's key, and the kind in ops/ingested_files
    table: str                     # the bronze table's key
    schema: T.StructType
    time_column: str | None        # must parse as a time when set
    # Typed columns added to good records, given the batch's file times and the night's end.
    finish: Callable[[DataFrame, datetime], Callable[[DataFrame], DataFrame]]
    keep_first_by: Sequence[str]   # which of a batch's repeated `_id`s is kept
    properties: dict[str, str]
    partition_by: Sequence[str] = ()


# Delta's default is min/max statistics on the first 32 leaf columns: XDM fields nobody
# filters on, a noticeable share of bronze's first write. Validation reads each
# night's rows by `_ingest_run_date`, which that default missed (it comes after the XDM
# fields); with its statistics Delta skips earlier nights' files instead of scanning them.
EVENTS = BronzeKind("events", "bronze_events", EXPERIENCE_EVENT, "timestamp",
                    lambda file_times, night_ends: with_event_time, ["timestamp", SOURCE_FILE],
                    {**CDF, "delta.dataSkippingStatsColumns": "_ingest_run_date,timestamp"},
                    partition_by=["event_date"])
PROFILES = BronzeKind("profiles", "bronze_profiles", INDIVIDUAL_PROFILE, None, profile_fragments,
                      ["updated_at", SOURCE_FILE], {**CDF, "delta.dataSkippingStatsColumns": "_ingest_run_date"})

GRAPH_SCHEMA = T.StructType(
    [T.StructField(name, T.StringType()) for name in GRAPH_COLUMNS[:5]]
    + [T.StructField(name, T.DateType()) for name in GRAPH_COLUMNS[5:]])


def _inserted_rows(spark: SparkSession, path: str, version_before: int | None) -> int:
    """Rows the last write inserted, from the Delta log (no extra scan)."""
    inserted, version = lakehouse.rows_changed(spark, path, version_before, ("numTargetRowsInserted", "numOutputRows"))
    if inserted is None:
        raise RuntimeError(f"no row count in the Delta log of {path} for version {version}")
    return inserted


def _ingest_kind(ctx: RunContext, bronze: BronzeKind, required: Sequence[str]) -> dict[str, int]:
    """New landing files of one kind -> quarantine and bronze, then the ingested-files ledger."""
    cfg, spark, kind = ctx.cfg, ctx.spark, bronze.name
    folder = cfg.landing(kind)
    counts = {"files_read": 0, "records_in": 0, "inserted": 0, "already_present": 0, "batch_duplicates": 0,
              "quarantined": 0}
    if not lakehouse.folder_exists(spark, folder):
        # A source that exports events only (or profiles only) has no folder for the other kind.
        ctx.progress(f"{kind}: no landing folder ({folder}); none of this kind tonight")
        return {**counts, "landing_absent": 1}
    listed = landing.list_files(spark, folder)
    files = landing.new_files(spark, cfg.table("ingested_files"), kind, listed)
    ctx.progress(f"{kind}: {len(files)} new of {len(listed)} landing files")
    counts["files_read"] = len(files)
    if not files:
        return counts

    codes = namespace_codes(cfg.get("identity.namespace_priority"), cfg.get("identity.namespace_aliases", {}) or {})

    def flagged_batch(broken: dict[str, str]) -> tuple[DataFrame, list]:
        raw = landing.read_raw(spark, files, int(cfg.get("ingest.max_json_array_bytes")), broken)
        # Parse once: the flagged batch is cached and every outcome is read from it.
        batch = (raw.transform(parse_records(bronze.schema, codes))
                 .transform(flag_records(required, bronze.time_column))
                 .persist(StorageLevel.MEMORY_AND_DISK))
        # One row per file and reason: bounded by the files and the reasons, not the records.
        try:
            return batch, batch.groupBy(SOURCE_FILE, REASON).count().collect()
        except Exception:
            batch.unpersist()
            raise

    try:
        flagged, outcome = flagged_batch({})
    except Exception:
        # A file that cannot be read to its end (a truncated gzip) fails the whole read: find
        # it, quarantine it as one record naming the error, and read the others.
        broken = landing.unreadable(spark, files)
        if not broken:
            raise
        ctx.progress(f"{kind}: {len(broken)} landing file(s) cannot be read: quarantined, the others go on")
        flagged, outcome = flagged_batch(broken)
    per_file: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for row in outcome:
        per_file[row[SOURCE_FILE]] = per_file.get(row[SOURCE_FILE], 0) + row["count"]
        if row[REASON] is not None:
            by_reason[row[REASON]] = by_reason.get(row[REASON], 0) + row["count"]
    records_in, quarantined = sum(per_file.values()), sum(by_reason.values())
    file_times = spark.createDataFrame([(f.path, f.modified_at.replace(tzinfo=timezone.utc)) for f in files],
                                       f"{SOURCE_FILE} string, modified_at timestamp")
    night_ends = datetime.combine(ctx.run_date, time.min) - timedelta(microseconds=1)
    good = (good_records(flagged, cfg.get("identity.namespace_priority"), ctx.run_date)
            .transform(bronze.finish(file_times, night_ends)))
    # One row per repeat of an `_id` in the batch: read by the count and by the bronze write.
    repeats = later_repeats(good, "_id", bronze.keep_first_by).persist(StorageLevel.MEMORY_AND_DISK)
    batch_duplicates = repeats.count()
    unique_count = records_in - quarantined - batch_duplicates
    ctx.progress(f"{kind}: {records_in} records read, {quarantined} to quarantine")

    quarantine = bad_records(flagged).transform(quarantine_rows(kind, ctx.run_date))
    lakehouse.insert_new(quarantine, cfg.table("quarantine"), keys=["record_key"],
                         properties=lakehouse.stats_on("first_seen_run_date"))
    path = cfg.table(bronze.table)
    before = lakehouse.version(spark, path)
    unique = without(good, repeats)
    lakehouse.insert_new(unique, path, keys=["_id"], partition_by=bronze.partition_by,
                         properties=bronze.properties, batch_rows=unique_count)
    inserted = _inserted_rows(spark, path, before)
    # A re-delivered record whose content changed under an `_id` bronze holds: the first stays,
    # and the changed ones are counted apart, so a correction sent as a redelivery is seen.
    changed = (_changed_redeliveries(unique, spark.read.format("delta").option("versionAsOf", before).load(path))
               if before is not None and unique_count > inserted else 0)
    flagged.unpersist()
    repeats.unpersist()
    # Last: a file counts as ingested only once its records are safely in.
    ledger = landing.ledger_rows(spark, kind, files, per_file, ctx.run_id, ctx.run_date)
    lakehouse.insert_new(ledger, cfg.table("ingested_files"), keys=["kind", "path", "size_bytes", "modified_at"])
    counts.update(records_in=records_in, inserted=inserted, already_present=unique_count - inserted,
                  changed_redelivered=changed, batch_duplicates=batch_duplicates, quarantined=quarantined)
    # Per kind of problem: a night of truncated lines is one kind, not a line per column number.
    by_problem: dict[str, int] = {}
    for reason, n in by_reason.items():
        by_problem[reason_kind(reason)] = by_problem.get(reason_kind(reason), 0) + n
    counts.update({f"quarantined[{problem}]": n for problem, n in sorted(by_problem.items())})
    ctx.progress(f"{kind}: {inserted} new rows, {counts['already_present']} already present"
                 + (f" ({changed} of them with other content, kept as first delivered)" if changed else "")
                 + f", {counts['batch_duplicates']} duplicates in the batch")
    return counts


# Not content: where and when a record was ingested.
DELIVERY_COLUMNS = ("_ingest_run_date", SOURCE_FILE)


def _changed_redeliveries(batch: DataFrame, bronze: DataFrame) -> int:
    """How many of the batch's records carry an `_id` bronze already holds, with other content."""
    content = [c for c in batch.columns if c not in DELIVERY_COLUMNS and c in bronze.columns]

    def digest(frame: DataFrame, name: str) -> DataFrame:
        return frame.select("_id", F.sha2(F.to_json(F.struct(*content)), 256).alias(name))
    # Only bronze rows of the batch's `_id`s are hashed, not the whole table.
    held = bronze.join(batch.select("_id"), "_id", "left_semi")
    pairs = digest(batch, "new").join(digest(held, "old"), "_id")
    return pairs.where(F.col("new") != F.col("old")).count()


def _synced_versions(spark: SparkSession, graph_path: str) -> dict[str, int]:
    if not lakehouse.exists(spark, graph_path):
        return {}
    properties = DeltaTable.forPath(spark, graph_path).detail().first()["properties"]
    return {k[len(SYNCED_PROPERTY):]: int(v) for k, v in properties.items() if k.startswith(SYNCED_PROPERTY)}


def _inserted_since(spark: SparkSession, path: str, synced: int | None) -> DataFrame | None:
    """Rows inserted into a bronze table after version `synced` (all of it when None)."""
    latest = lakehouse.version(spark, path)
    if latest is None or (synced is not None and synced >= latest):
        return None
    if synced is None:
        # Everything, as of `latest`: the table itself. Its scan reads only the nested fields
        # used, where the change feed reads whole structs (about three times the time);
        # and rows already forgotten stay forgotten.
        return spark.read.format("delta").option("versionAsOf", latest).load(path)
    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", synced + 1).load(path))
    return changes.where(F.col("_change_type") == "insert").drop("_change_type", "_commit_version",
                                                                "_commit_timestamp")


def _rows_inserted_since(spark: SparkSession, path: str, synced: int | None, latest: int | None) -> int | None:
    """How many rows the commits after version `synced` up to `latest` inserted at most,
    from the Delta log; None when no version is synced yet (the whole table is new to
    silver) or a commit's file is gone."""
    if synced is None or latest is None:
        return None
    total = 0
    for version in range(synced + 1, latest + 1):
        # Delta drops commit files older than its log retention: then the size is unknown.
        if not lakehouse.folder_exists(spark, f"{path.rstrip('/')}/_delta_log/{version:020d}.json"):
            return None
        metrics = lakehouse.commit_metrics(spark, path, version)
        # An insert records its rows; another operation (a forget's delete) adds none.
        total += metrics.get("numTargetRowsInserted", metrics.get("numOutputRows", 0))
    return total


def build_silver(ctx: RunContext) -> dict[str, int]:
    """Resolve the identities of records new to bronze, then bring silver up to date.

    Writes in an order that makes a killed run safe to repeat: logs, then silver events, then
    the graph, then the synced versions. Until the graph is written, a rerun computes the
    same resolution again; once it is, a rerun finds nothing left to change.
    """
    cfg, spark = ctx.cfg, ctx.spark
    rules = IdentityRules(priority=cfg.get("identity.namespace_priority"),
                          unique_namespaces=cfg.get("identity.unique_namespaces", []) or [],
                          max_identities_per_person=int(cfg.get("identity.max_identities_per_person")),
                          local_max_links=int(cfg.get("identity.local_max_links")))
    graph_path, events_path = cfg.table("identity_graph"), cfg.table("silver_events")
    synced = _synced_versions(spark, graph_path)
    # Keyed by kind: the graph's table properties name the bronze versions it has resolved.
    versions = {kind.name: lakehouse.version(spark, cfg.table(kind.table)) for kind in (EVENTS, PROFILES)}
    # Not cached: each use reads only the columns it needs, which Parquet makes cheap.
    new_events = _inserted_since(spark, cfg.table(EVENTS.table), synced.get(EVENTS.name))
    new_profiles = _inserted_since(spark, cfg.table(PROFILES.table), synced.get(PROFILES.name))
    counts = {"silver_new_events": 0, "identities_added": 0, "people_merged": 0, "identity_cuts": 0}
    if new_events is None and new_profiles is None:
        ctx.progress("silver: bronze unchanged since the last run")
        return counts

    graph = (lakehouse.read(spark, graph_path) if lakehouse.exists(spark, graph_path)
             else spark.createDataFrame([], GRAPH_SCHEMA))
    sources = [df.select("identityMap") for df in (new_events, new_profiles) if df is not None]
    # Not cached: the resolution reads the identities once, into its checkpointed stars.
    records = sources[0] if len(sources) == 1 else sources[0].unionByName(sources[1])
    resolution = resolve(graph, records, rules, ctx.run_date)
    assignments = resolution.assignments.localCheckpoint()
    merges = resolution.merges.localCheckpoint()
    cuts = resolution.cuts.localCheckpoint()
    counts.update(identities_added=assignments.where(F.col("first_seen_run_date") == F.lit(ctx.run_date)).count(),
                  people_merged=merges.count(), identity_cuts=cuts.count())
    ctx.progress(f"identity: {counts['identities_added']} new identities, {counts['people_merged']} people "
                 f"merged, {counts['identity_cuts']} links cut")

    lakehouse.insert_new(merges, cfg.table("identity_merges"), keys=["merged_person_id"],
                         batch_rows=counts["people_merged"])
    lakehouse.insert_new(cuts, cfg.table("identity_cuts"), keys=["namespace", "id", "reason", "run_date"],
                         properties=lakehouse.stats_on("run_date"), batch_rows=counts["identity_cuts"])
    if lakehouse.exists(spark, events_path) and counts["people_merged"]:
        (DeltaTable.forPath(spark, events_path).alias("t")
         .merge(merges.alias("m"), "t.person_id = m.merged_person_id")
         .whenMatchedUpdate(set={"person_id": "m.surviving_person_id"})
         .execute())
    if new_events is not None:
        current = assignments.unionByName(graph.join(assignments, ["namespace", "id"], "left_anti"))
        flat = new_events.transform(resolved_person(current, rules.priority)).transform(flatten_events)
        before = lakehouse.version(spark, events_path)
        lakehouse.insert_new(flat, events_path, keys=["event_id"],
                             batch_rows=_rows_inserted_since(spark, cfg.table(EVENTS.table), synced.get(EVENTS.name),
                                                             versions[EVENTS.name]))
        # From the Delta log, not a second pass over the batch.
        counts["silver_new_events"] = _inserted_rows(spark, events_path, before)
    if not resolution.graph_unchanged or not lakehouse.exists(spark, graph_path):
        _upsert_graph(spark, assignments, graph_path)
    # A profile's person moves only when it is new or one of its identities moved (a merge):
    # the identities a batch of events adds are none of a profile's.
    if new_profiles is not None or counts["people_merged"] or not lakehouse.exists(spark, cfg.table("silver_profiles")):
        _rebuild_profiles(ctx, rules)
    properties = ", ".join(f"'{SYNCED_PROPERTY}{name}' = '{v}'" for name, v in versions.items() if v is not None)
    spark.sql(f"ALTER TABLE delta.`{graph_path}` SET TBLPROPERTIES ({properties})")
    return counts


def _upsert_graph(spark: SparkSession, assignments: DataFrame, path: str) -> None:
    if not lakehouse.exists(spark, path):
        lakehouse.overwrite(assignments, path, properties=lakehouse.stats_on("person_id"))
        return
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(assignments.alias("s"), "t.namespace = s.namespace AND t.id = s.id")
     .whenMatchedUpdate(set={c: f"s.{c}" for c in ("person_id", "anchor_namespace", "anchor_id",
                                                   "updated_run_date")})
     .whenNotMatchedInsertAll()
     .execute())


def _rebuild_profiles(ctx: RunContext, rules: IdentityRules) -> None:
    """silver/profiles: one row per person, fragments merged attribute by attribute."""
    cfg, spark = ctx.cfg, ctx.spark
    if not lakehouse.exists(spark, cfg.table(PROFILES.table)):
        return
    graph = lakehouse.read(spark, cfg.table("identity_graph"))
    fragments = lakehouse.read(spark, cfg.table(PROFILES.table)).transform(resolved_person(graph, rules.priority))
    lakehouse.overwrite(fragments.transform(merge_profile_fragments), cfg.table("silver_profiles"),
                        properties=lakehouse.stats_on("person_id"))


def run(ctx: RunContext) -> dict[str, float]:
    register_normaliser(ctx.spark)
    folders = [ctx.cfg.landing(kind.name) for kind in (EVENTS, PROFILES)]
    if not any(lakehouse.folder_exists(ctx.spark, folder) for folder in folders):
        raise BadInputError(f"no landing folder: neither {folders[0]} nor {folders[1]} exists "
                            "(lakehouse.landing sets them)")
    events = _ingest_kind(ctx, EVENTS, ctx.cfg.get("ingest.required_fields"))
    profiles = _ingest_kind(ctx, PROFILES, [])   # a profile record is keyed by its identities
    silver = build_silver(ctx)
    metrics = {f"events_{k}": v for k, v in events.items()}
    metrics.update({f"profiles_{k}": v for k, v in profiles.items()})
    metrics.update(silver)
    return metrics
