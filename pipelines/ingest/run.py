"""The ingest step: landing -> bronze (merge on _id) + quarantine -> silver.

Accounting, per run and kind: records_in == inserted + already_present + batch_duplicates
+ quarantined. The counts go to the run ledger.
"""

from __future__ import annotations

import pyspark.sql.functions as F
from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines import lakehouse
from pipelines.ingest.identity import identity_graph, with_person_id
from pipelines.ingest.parse import (RAW, REASON, SOURCE_FILE, bad_records, first_per_key, flag_records,
                                    good_records, parse_json_lines, quarantine_rows, with_event_time,
                                    with_profile_time)
from pipelines.ingest.silver import flatten_events
from pipelines.ops.context import RunContext
from pipelines.xdm.schema import EXPERIENCE_EVENT, INDIVIDUAL_PROFILE


def read_landing_lines(ctx: RunContext, kind: str) -> DataFrame:
    """Non-blank lines of every file in the landing folder (plain or gzip), with their file."""
    folder = ctx.cfg.landing(kind)
    lakehouse.require_folder(ctx.spark, folder, f"landing folder for {kind}")
    lines = (ctx.spark.read.option("recursiveFileLookup", "true").text(folder)
             .select(F.col("value").alias(RAW), F.col("_metadata.file_path").alias(SOURCE_FILE)))
    return lines.where(F.trim(F.col(RAW)) != "")


def _inserted_rows(ctx: RunContext, path: str, version_before: int | None) -> int:
    """Rows the last write inserted, from the Delta log (no extra scan)."""
    table = DeltaTable.forPath(ctx.spark, path)
    last = table.history(1).first()
    if version_before is not None and last["version"] == version_before:
        return 0
    metrics = last["operationMetrics"] or {}
    for key in ("numTargetRowsInserted", "numOutputRows"):
        if key in metrics:
            return int(metrics[key])
    raise RuntimeError(f"no row count in the Delta log of {path} for version {last['version']}")


def _ingest_kind(ctx: RunContext, kind: str, schema, required, time_column, finish, key_order,
                 table: str, partition_by=()) -> dict[str, int]:
    cfg, spark = ctx.cfg, ctx.spark
    priority = cfg.get("identity.namespace_priority")
    # Parse once: the flagged batch is cached and both outcomes are read from it.
    flagged = (read_landing_lines(ctx, kind).transform(parse_json_lines(schema))
               .transform(flag_records(required, time_column))
               .persist(StorageLevel.MEMORY_AND_DISK))
    outcome = flagged.agg(F.count(F.lit(1)).alias("records"),
                          F.count(F.col(REASON)).alias("bad")).first()
    records_in, quarantined = outcome["records"], outcome["bad"]
    good_count = records_in - quarantined
    unique = (good_records(flagged, priority, ctx.run_date).transform(finish)
              .transform(first_per_key("_id", key_order))
              .persist(StorageLevel.MEMORY_AND_DISK))
    unique_count = unique.count()
    quarantine = bad_records(flagged).transform(quarantine_rows(kind, ctx.run_date)).cache()
    ctx.progress(f"{kind}: {records_in} records read, {quarantined} to quarantine")

    path = cfg.table(table)
    before = lakehouse.version(spark, path)
    lakehouse.insert_new(unique, path, keys=["_id"], partition_by=partition_by)
    inserted = _inserted_rows(ctx, path, before)
    lakehouse.insert_new(quarantine, cfg.table("quarantine"), keys=["record_key"])
    for frame in (flagged, unique, quarantine):
        frame.unpersist()
    counts = {
        "records_in": records_in,
        "inserted": inserted,
        "already_present": unique_count - inserted,
        "batch_duplicates": good_count - unique_count,
        "quarantined": quarantined,
    }
    ctx.progress(f"{kind}: {inserted} new rows, {counts['already_present']} already present, "
                 f"{counts['batch_duplicates']} duplicates in the batch")
    return counts


def build_silver(ctx: RunContext) -> dict[str, int]:
    """Rebuild the identity graph and the flat events from the whole of bronze."""
    cfg, spark = ctx.cfg, ctx.spark
    priority = cfg.get("identity.namespace_priority")
    events = lakehouse.read(spark, cfg.table("events"))
    sources = events.select("identityMap")
    if lakehouse.exists(spark, cfg.table("profiles")):
        sources = sources.unionByName(lakehouse.read(spark, cfg.table("profiles")).select("identityMap"))
    graph = sources.transform(identity_graph(priority))
    lakehouse.overwrite(graph, cfg.table("identity_graph"))
    graph = lakehouse.read(spark, cfg.table("identity_graph"))
    flat = events.transform(with_person_id(graph)).transform(flatten_events)
    # Not partitioned: features read all history before a date, and small date partitions
    # would only multiply files.
    lakehouse.overwrite(flat, cfg.table("silver_events"))
    sizes = graph.agg(F.count(F.lit(1)).alias("identities"), F.count_distinct("person_id").alias("people")).first()
    identities, people = sizes["identities"], sizes["people"]
    ctx.progress(f"identity graph: {identities} identities -> {people} people")
    return {"identities": identities, "people": people}


def run(ctx: RunContext) -> dict[str, float]:
    events = _ingest_kind(ctx, "events", EXPERIENCE_EVENT, ctx.cfg.get("ingest.required_fields"),
                          "timestamp", with_event_time, ["timestamp", SOURCE_FILE], "events",
                          partition_by=["event_date"])
    profiles = _ingest_kind(ctx, "profiles", INDIVIDUAL_PROFILE, ["_id"], None, with_profile_time,
                            ["updated_at", SOURCE_FILE], "profiles")
    silver = build_silver(ctx)
    metrics = {f"events_{k}": v for k, v in events.items()}
    metrics.update({f"profiles_{k}": v for k, v in profiles.items()})
    metrics.update(silver)
    return metrics
