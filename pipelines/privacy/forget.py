"""`enrich forget`: a person, and every identity linked to them, out of every table.

The person is found through any of their identities; each table loses the rows that
hold them, by person_id, by identity (bronze records and identity cuts) or by text
(quarantined raw lines); quality samples that quote an identity are redacted. Each
table's change is one Delta transaction; the whole request is idempotent, so a run
that stops part-way is finished by running it again. A receipt in
`ops/deletion_receipts` records what was removed, without the personal data (a hash of
the request, counts and versions). The old table files still hold the rows until
`vacuum` removes files older than `privacy.retention_hours`: the nightly does that once
a receipt's retention has passed, and `enrich vacuum` does it on demand.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from typing import Callable

import pyspark.sql.functions as F
from delta.tables import DeltaTable
from pyspark.sql import Column, SparkSession
from pyspark.sql import types as T

from pipelines.core import lakehouse
from pipelines.core.config import RENAMED_TABLE_KEYS, Config
from pipelines.core.errors import BadInputError
from pipelines.identity.graph import people_holding
from pipelines.core.clock import utc_now
from pipelines.core.session import settings_applied
from pipelines.xdm.identity_map import identities

log = logging.getLogger("enrich")

RECEIPT_SCHEMA = T.StructType([
    T.StructField("receipt_id", T.StringType()),
    T.StructField("requested_at", T.TimestampType()),
    T.StructField("request_sha256", T.StringType()),   # of "namespace:id", to match a repeated request
    T.StructField("people", T.IntegerType()),
    T.StructField("identities", T.IntegerType()),
    T.StructField("rows_removed", T.MapType(T.StringType(), T.LongType())),
    T.StructField("table_versions", T.MapType(T.StringType(), T.LongType())),
    T.StructField("vacuum_after", T.TimestampType()),
    T.StructField("vacuumed_at", T.TimestampType()),
])
PERSON_TABLES = ("silver_profiles", "silver_events", "features", "training_sets", "scores", "predictions",
                 "lifetime_value", "affinity", "segments", "profile_enrichment", "identity_graph")   # the graph last
REDACTED = "[redacted by a deletion request]"


@dataclass(frozen=True)
class Subject:
    people: tuple[str, ...]
    identities: tuple[tuple[str, str], ...]   # (namespace, id)


def find_subject(spark: SparkSession, cfg: Config, namespace: str, identity: str) -> Subject:
    """Everyone holding `namespace:identity` and all their identities (a person holds at
    most identity.max_identities_per_person, so this is small)."""
    graph = lakehouse.read(spark, cfg.table("identity_graph"), "ingest")
    people = people_holding(graph, namespace, identity)
    linked = graph.where(F.col("person_id").isin(people)).select("namespace", "id").distinct().collect()
    return Subject(people=tuple(people), identities=tuple(sorted((r["namespace"], r["id"]) for r in linked)))


def _holds_identity(subject: Subject) -> Column:
    keys = [f"{ns}\u0000{i}" for ns, i in subject.identities]
    return F.exists(identities(F.col("identityMap")),
                    lambda ident: F.concat_ws("\u0000", ident["namespace"], ident["id"]).isin(keys))


def _mentions(column: str, subject: Subject) -> Column:
    """The text column quotes one of the subject's ids or person ids."""
    ids = sorted({i for _, i in subject.identities} | set(subject.people))
    return F.coalesce(reduce(operator.or_, [F.instr(F.col(column), i) > 0 for i in ids]), F.lit(False))


def deletions(subject: Subject) -> dict[str, Callable[[], Column]]:
    """Per table, the rows that hold the subject, in the order they are deleted: the
    identity graph last, so a request that stops part-way still finds the person when run
    again."""
    people = list(subject.people)
    pairs = F.array(*[F.struct(F.lit(ns).alias("namespace"), F.lit(i).alias("id")) for ns, i in subject.identities])
    rules: dict[str, Callable[[], Column]] = {
        "bronze_events": lambda: _holds_identity(subject),
        "bronze_profiles": lambda: _holds_identity(subject),
        "quarantine": lambda: _mentions("raw", subject),
        "identity_merges": lambda: F.col("merged_person_id").isin(people) | F.col("surviving_person_id").isin(people),
        "identity_cuts": lambda: F.array_contains(pairs, F.struct("namespace", "id")),
    }
    rules.update({name: (lambda: F.col("person_id").isin(people)) for name in PERSON_TABLES})
    return rules


def forget(spark: SparkSession, cfg: Config, namespace: str, identity: str) -> dict:
    """Delete the subject everywhere, redact quality samples, record a receipt; the receipt."""
    subject = find_subject(spark, cfg, namespace, identity)
    removed, versions = {}, {}
    if subject.people:
        for name, condition in deletions(subject).items():
            path = cfg.table(name)
            if not lakehouse.exists(spark, path):
                continue
            before = lakehouse.version(spark, path)
            DeltaTable.forPath(spark, path).delete(condition())
            deleted, versions[name] = lakehouse.rows_changed(spark, path, before, ["numDeletedRows"])
            removed[name] = deleted or 0
            log.info("  %-20s %d rows removed", name, removed[name])
        results = cfg.table("dq_results")
        if lakehouse.exists(spark, results):
            before = lakehouse.version(spark, results)
            quoted = _mentions("samples", subject) | _mentions("observed", subject)
            DeltaTable.forPath(spark, results).update(quoted, {"samples": F.lit(REDACTED), "observed": F.lit(REDACTED)})
            redacted, versions["dq_results"] = lakehouse.rows_changed(spark, results, before, ["numUpdatedRows"])
            removed["dq_results (redacted)"] = redacted or 0
    now = utc_now()
    receipt = {"receipt_id": uuid.uuid4().hex, "requested_at": now,
               "request_sha256": hashlib.sha256(f"{namespace}:{identity}".encode()).hexdigest(),
               "people": len(subject.people), "identities": len(subject.identities),
               "rows_removed": removed, "table_versions": versions,
               "vacuum_after": now + timedelta(hours=float(cfg.get("privacy.retention_hours"))),
               "vacuumed_at": None}
    lakehouse.append(spark.createDataFrame([receipt], RECEIPT_SCHEMA), cfg.table("deletion_receipts"))
    return receipt


def _due(cfg: Config, at: datetime) -> Column:
    """Receipts whose deletion is at least privacy.retention_hours old at `at`: a VACUUM
    then removes every file that still holds their rows."""
    cutoff = at - timedelta(hours=float(cfg.get("privacy.retention_hours")))
    return F.col("vacuumed_at").isNull() & (F.col("requested_at") <= F.lit(cutoff))


def due_tables(spark: SparkSession, cfg: Config, now: datetime) -> list[str]:
    """The tables that deletions due for vacuum changed (empty: nothing due)."""
    path = cfg.table("deletion_receipts")
    if not lakehouse.exists(spark, path):
        return []
    rows = (lakehouse.read(spark, path).where(_due(cfg, now))
            .select(F.explode(F.map_keys("table_versions")).alias("table")).distinct().collect())
    # Receipts written before a table key was renamed name the table by its old key.
    return sorted({RENAMED_TABLE_KEYS.get(r["table"], r["table"]) for r in rows})


def vacuum(spark: SparkSession, cfg: Config, tables: list[str] | None = None,
           at: datetime | None = None) -> list[str]:
    """VACUUM `tables` (default: every table), keeping privacy.retention_hours of history,
    and mark the receipts due at `at` (default: now), whose deletions are now out of every
    file, as vacuumed. The tables vacuumed."""
    hours = float(cfg.get("privacy.retention_hours"))
    if hours < 0:
        raise BadInputError(f"privacy.retention_hours must be >= 0, got {hours}")
    started = utc_now()
    at = at or started
    names = [n for n in (tables if tables is not None else cfg.get("lakehouse.tables")) if n != "deletion_receipts"]
    # Delta refuses a retention below its 7-day default unless told: conf is the one place
    # that decides. Its file listing would start one task per 10,000 paths by default;
    # one per core is plenty for a table's folders.
    settings = {"spark.databricks.delta.retentionDurationCheck.enabled": str(hours >= 168).lower(),
                "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(spark.sparkContext.defaultParallelism)}
    vacuumed = []
    with settings_applied(spark, settings):
        for name in names:
            path = cfg.table(name)
            if lakehouse.exists(spark, path):
                spark.sql(f"VACUUM delta.`{path}` RETAIN {hours} HOURS").collect()
                vacuumed.append(name)
    receipts = cfg.table("deletion_receipts")
    if lakehouse.exists(spark, receipts):
        # Due at `at`: the same instant that chose `tables`, so each receipt marked had its tables vacuumed.
        DeltaTable.forPath(spark, receipts).update(_due(cfg, at), {"vacuumed_at": F.lit(started)})
    return vacuumed
