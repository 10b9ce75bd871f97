"""`enrich forget`: a person, and every identity linked to them, out of every table.

The person is found through any of their identities (namespaces without case; e-mail
addresses without case and surrounding spaces, as `identity.case_insensitive_namespaces`
says). In this order, each step one Delta transaction, idempotent:

1. a receipt in `ops/deletion_receipts`, written first (status `started`): no personal
   data, only counts, table versions and, when `ENRICH_RECEIPT_KEY` is set, a keyed hash
   of the request that lets the same request find and finish its receipt;
2. every table loses the rows that hold the person: by person_id, by identity (bronze
   records, identity cuts) or by text (quarantined raw lines, searched even when no person
   holds the identity: a person whose every record was quarantined has no person_id);
3. quality samples and run records that quote the person (an identity, an e-mail address,
   a name or a phone number from their profile) are redacted: `ops/dq_results`,
   `ops/runs`, and the reports, Data Docs and validation results under the reports folder;
4. the identity graph, last, so a request stopped part-way still finds the person when
   run again;
5. the receipt, `done`, with what was removed.

Deletions join the table with a small frame of the person's ids, so no identity is
written into a commit's predicate (Delta keeps those in its log, which VACUUM never
reaches). The old table files still hold the rows until `vacuum` removes files older
than `privacy.retention_hours`: the nightly does that once a receipt's retention has
passed, whatever the night's outcome, and `enrich vacuum` does it on demand.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

import pyspark.sql.functions as F
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import types as T

from pipelines.core import lakehouse
from pipelines.core.clock import utc_now
from pipelines.core.config import RENAMED_TABLE_KEYS, Config
from pipelines.core.errors import BadInputError
from pipelines.core.session import settings_applied
from pipelines.identity.graph import people_holding
from pipelines.xdm.identity_map import namespace_codes

log = logging.getLogger("enrich")

RECEIPT_SCHEMA = T.StructType([
    T.StructField("receipt_id", T.StringType()),
    T.StructField("requested_at", T.TimestampType()),
    # HMAC-SHA256 of the normalised "namespace:id" under ENRICH_RECEIPT_KEY; null without a key.
    T.StructField("request_digest", T.StringType()),
    T.StructField("status", T.StringType()),           # started | done
    T.StructField("people", T.IntegerType()),
    T.StructField("identities", T.IntegerType()),
    T.StructField("rows_removed", T.MapType(T.StringType(), T.LongType())),
    T.StructField("table_versions", T.MapType(T.StringType(), T.LongType())),
    T.StructField("finished_at", T.TimestampType()),
    T.StructField("vacuum_after", T.TimestampType()),
    T.StructField("vacuumed_at", T.TimestampType()),
])
RECEIPT_KEY_ENV = "ENRICH_RECEIPT_KEY"
PERSON_TABLES = ("silver_profiles", "silver_events", "features", "training_sets", "scores", "predictions",
                 "lifetime_value", "affinity", "product_affinity", "content_affinity", "segments", "profile_enrichment")
REDACTED = "[redacted by a deletion request]"
# Profile attributes that name a person, quoted by quality samples (an e-mail that is not well
# formed, say); first and last names alone are too common to search for.
PROFILE_TEXTS = ("email", "full_name", "mobile_phone")
# Texts shorter than this are not searched for: they would match inside unrelated values.
MIN_TEXT_LENGTH = 5


@dataclass(frozen=True)
class Subject:
    people: tuple[str, ...]
    identities: tuple[tuple[str, str], ...]   # (namespace, id), as the graph holds them
    texts: tuple[str, ...]                    # what quotes the person: ids, e-mail, name, phone


def normalised(cfg: Config, namespace: str, identity: str) -> tuple[str, str]:
    """An identity as ingest keys it: the namespace's code (any case, aliases), the id without
    surrounding spaces, and in lower case for the namespaces conf lists."""
    codes = namespace_codes(cfg.get("identity.namespace_priority"), cfg.get("identity.namespace_aliases", {}) or {})
    code = codes.get(namespace.strip().lower(), namespace.strip())
    insensitive = {str(n).lower() for n in cfg.get("identity.case_insensitive_namespaces", []) or []}
    identity = identity.strip()
    return code, identity.lower() if code.lower() in insensitive else identity


def find_subject(spark: SparkSession, cfg: Config, namespace: str, identity: str) -> Subject:
    """Everyone holding `namespace:identity`, all their identities, and the texts that quote
    them (a person holds at most identity.max_identities_per_person: small)."""
    namespace, identity = normalised(cfg, namespace, identity)
    insensitive = cfg.get("identity.case_insensitive_namespaces", []) or []
    graph = (lakehouse.read(spark, cfg.table("identity_graph"))
             if lakehouse.exists(spark, cfg.table("identity_graph")) else None)
    people = people_holding(graph, namespace, identity, insensitive) if graph is not None else []
    linked = (graph.where(F.col("person_id").isin(people)).select("namespace", "id").distinct().collect()
              if people else [])
    pairs = sorted({(r["namespace"], r["id"]) for r in linked} | {(namespace, identity)})
    texts = {i for _, i in pairs}
    profiles = cfg.table("silver_profiles")
    if people and lakehouse.exists(spark, profiles):
        for row in lakehouse.read(spark, profiles).where(F.col("person_id").isin(people)).select(
                *PROFILE_TEXTS).collect():
            texts |= {str(v) for v in row if v is not None}
    return Subject(people=tuple(people), identities=tuple(pairs),
                   texts=tuple(sorted(t for t in texts if len(t) >= MIN_TEXT_LENGTH)))


def _request_digest(cfg: Config, namespace: str, identity: str) -> str | None:
    key = os.environ.get(RECEIPT_KEY_ENV)
    if not key:
        return None
    code, value = normalised(cfg, namespace, identity)
    return hmac.new(key.encode(), f"{code}:{value}".encode(), hashlib.sha256).hexdigest()


def _merge_delete(target: DeltaTable, source: DataFrame, condition: str) -> None:
    """Delete the target's rows that match a row of `source` (a small frame): the commit
    records `condition`, which names columns, never the values it matches."""
    target.alias("t").merge(F.broadcast(source).alias("s"), condition).whenMatchedDelete().execute()


def _sources(spark: SparkSession, subject: Subject, insensitive: Sequence[str]) -> dict[str, DataFrame]:
    """The small frames deletions join with. An identity's key is its namespace and id, the
    id without case only in the `insensitive` namespaces (lower-cased codes): elsewhere ids
    that differ in case are other people's."""
    lowered = sorted({n.lower() for n in insensitive})
    keys = sorted({f"{ns.lower()}\u0000{i.strip().lower() if ns.lower() in lowered else i.strip()}"
                   for ns, i in subject.identities})
    return {
        "people": spark.createDataFrame([(p,) for p in subject.people], "person_id string"),
        "keys": spark.createDataFrame([(k, lowered) for k in keys], "key string, insensitive array<string>"),
        "pairs": spark.createDataFrame(list(subject.identities), "namespace string, id string"),
        "texts": spark.createDataFrame([(t,) for t in subject.texts], "text string"),
    }


def deletions(subject: Subject) -> list[tuple[str, str, str]]:
    """(table, source, condition) per table, in the order they are deleted (the identity
    graph is not among them: it goes last, after the redactions)."""
    # Keyed as _sources keys them; the namespaces without case come with the source rows.
    by_identity = ("exists(flatten(transform(map_entries(t.identityMap), e -> transform(e.value, i -> "
                   "concat_ws('\\u0000', lower(e.key), CASE WHEN array_contains(s.insensitive, lower(e.key)) "
                   "THEN lower(trim(i.id)) ELSE trim(i.id) END)))), k -> k = s.key)")
    rules = [("bronze_events", "keys", by_identity), ("bronze_profiles", "keys", by_identity),
             ("quarantine", "texts", "instr(t.raw, s.text) > 0")]
    if subject.people:
        rules += [("identity_merges", "people",
                   "t.merged_person_id = s.person_id OR t.surviving_person_id = s.person_id"),
                  ("identity_cuts", "pairs", "t.namespace = s.namespace AND t.id = s.id")]
        rules += [(name, "people", "t.person_id = s.person_id") for name in PERSON_TABLES]
    return rules


def _redact_rows(spark: SparkSession, path: str, columns: tuple[str, ...], texts: list[str],
                 whole: bool) -> int | None:
    """Rows of `path` whose `columns` quote a text: the texts replaced (or, with `whole`, each
    of those columns replaced by REDACTED). The texts come as one source row, so the commit
    names none of them. Rows changed, or None when the table does not exist."""
    if not texts or not lakehouse.exists(spark, path):
        return None
    source = spark.createDataFrame([(texts,)], "texts array<string>")
    quotes = " OR ".join(f"exists(s.texts, x -> instr(coalesce(t.`{c}`, ''), x) > 0)" for c in columns)
    changed = {c: (F.lit(REDACTED) if whole else F.expr(
        f"aggregate(s.texts, t.`{c}`, (acc, x) -> replace(acc, x, '{REDACTED}'))")) for c in columns}
    before = lakehouse.version(spark, path)
    (DeltaTable.forPath(spark, path).alias("t").merge(F.broadcast(source).alias("s"), quotes)
     .whenMatchedUpdate(set={f"`{c}`": v for c, v in changed.items()}).execute())
    return lakehouse.rows_changed(spark, path, before, ["numTargetRowsUpdated"])[0] or 0


def _redact_files(spark: SparkSession, folder: str, texts: list[str]) -> int:
    """Every text file under `folder` (reports, Data Docs, GX validation results) with the
    texts replaced; how many files changed."""
    fs, root = lakehouse.file_system(spark, folder)
    if not texts or not fs.exists(root):
        return 0
    changed = 0
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        path = listing.next().getPath().toString()
        if not path.endswith((".html", ".json", ".txt", ".md")):
            continue
        text = lakehouse.read_text(spark, path)
        redacted = text
        for quoted in texts:
            redacted = redacted.replace(quoted, REDACTED).replace(json_escaped(quoted), REDACTED)
        if redacted != text:
            lakehouse.write_text(spark, path, redacted)
            changed += 1
    return changed


def json_escaped(text: str) -> str:
    """How `text` appears inside a JSON string (quotes and backslashes escaped)."""
    return json.dumps(text)[1:-1]


def forget(spark: SparkSession, cfg: Config, namespace: str, identity: str) -> dict:
    """Delete the subject everywhere, redact what quotes them, keep a receipt; the receipt."""
    subject = find_subject(spark, cfg, namespace, identity)
    receipts = cfg.table("deletion_receipts")
    _forget_old_digests(spark, receipts)
    digest = _request_digest(cfg, namespace, identity)
    now = utc_now()
    touched = [name for name, _, _ in deletions(subject)] + ["dq_results", "runs", "identity_graph"]
    versions = {name: v for name in touched if (v := lakehouse.version(spark, cfg.table(name))) is not None}
    receipt = _started_receipt(spark, receipts, digest) or {
        "receipt_id": uuid.uuid4().hex, "requested_at": now, "request_digest": digest, "status": "started",
        "people": len(subject.people), "identities": len(subject.identities), "rows_removed": {},
        "table_versions": versions, "finished_at": None,
        "vacuum_after": now + timedelta(hours=float(cfg.get("privacy.retention_hours"))), "vacuumed_at": None}
    if receipt["status"] == "started" and receipt["receipt_id"] not in _receipt_ids(spark, receipts):
        lakehouse.append(spark.createDataFrame([receipt], RECEIPT_SCHEMA), receipts, merge_schema=True)
    sources = _sources(spark, subject, cfg.get("identity.case_insensitive_namespaces", []) or [])
    removed = dict(receipt["rows_removed"] or {})
    for name, source, condition in deletions(subject):
        path = cfg.table(name)
        if not lakehouse.exists(spark, path):
            continue
        before = lakehouse.version(spark, path)
        _merge_delete(DeltaTable.forPath(spark, path), sources[source], condition)
        deleted, _ = lakehouse.rows_changed(spark, path, before, ["numTargetRowsDeleted"])
        removed[name] = removed.get(name, 0) + (deleted or 0)
        log.info("  %-20s %d rows removed", name, deleted or 0)
    texts = list(subject.texts)
    for name, columns, whole in (("dq_results", ("samples", "observed"), True),
                                 ("runs", ("details", "message"), False)):
        redacted = _redact_rows(spark, cfg.table(name), columns, texts, whole)
        if redacted is not None:
            removed[f"{name} (redacted)"] = removed.get(f"{name} (redacted)", 0) + redacted
    removed["report files (redacted)"] = (removed.get("report files (redacted)", 0)
                                          + _redact_files(spark, cfg.reports_dir(), texts))
    if subject.people and lakehouse.exists(spark, cfg.table("identity_graph")):
        path = cfg.table("identity_graph")
        before = lakehouse.version(spark, path)
        _merge_delete(DeltaTable.forPath(spark, path), sources["people"], "t.person_id = s.person_id")
        deleted, _ = lakehouse.rows_changed(spark, path, before, ["numTargetRowsDeleted"])
        removed["identity_graph"] = removed.get("identity_graph", 0) + (deleted or 0)
    finished = utc_now()
    done = {"status": "done", "rows_removed": removed, "finished_at": finished,
            "table_versions": {**(receipt["table_versions"] or {}), **versions},
            "people": max(int(receipt["people"] or 0), len(subject.people)),
            "identities": max(int(receipt["identities"] or 0), len(subject.identities)),
            "vacuum_after": finished + timedelta(hours=float(cfg.get("privacy.retention_hours")))}
    DeltaTable.forPath(spark, receipts).update(
        F.col("receipt_id") == F.lit(receipt["receipt_id"]),
        {"status": F.lit("done"), "finished_at": F.lit(finished).cast("timestamp"),
         "vacuum_after": F.lit(done["vacuum_after"]).cast("timestamp"),
         "people": F.lit(done["people"]), "identities": F.lit(done["identities"]),
         "rows_removed": F.create_map(*[x for k, v in removed.items() for x in (F.lit(k), F.lit(int(v)))])
         .cast("map<string,bigint>"),
         "table_versions": F.create_map(*[x for k, v in done["table_versions"].items()
                                          for x in (F.lit(k), F.lit(int(v)))]).cast("map<string,bigint>")})
    return {**receipt, **done}


def _receipt_ids(spark: SparkSession, receipts: str) -> set[str]:
    if not lakehouse.exists(spark, receipts):
        return set()
    return {r["receipt_id"] for r in lakehouse.read(spark, receipts).select("receipt_id").collect()}


def _started_receipt(spark: SparkSession, receipts: str, digest: str | None) -> dict | None:
    """The receipt of the same request that a run stopped before it was done (found by the
    keyed hash; without a key, a request cannot be recognised and starts a receipt of its own)."""
    if digest is None or not lakehouse.exists(spark, receipts):
        return None
    table = lakehouse.read(spark, receipts)
    if "request_digest" not in table.columns:
        return None
    row = table.where((F.col("request_digest") == digest) & (F.col("status") == "started")).first()
    return row.asDict() if row else None


def _forget_old_digests(spark: SparkSession, receipts: str) -> None:
    """Receipts of earlier releases kept an unsalted SHA-256 of the request, which a
    dictionary of e-mail addresses reverses: cleared."""
    if lakehouse.exists(spark, receipts) and "request_sha256" in lakehouse.read(spark, receipts).columns:
        DeltaTable.forPath(spark, receipts).update(F.col("request_sha256").isNotNull(),
                                                   {"request_sha256": F.lit(None).cast("string")})


def _due(cfg: Config, at: datetime, columns: list[str]) -> Column:
    """Receipts whose deletion is at least privacy.retention_hours old at `at`: a VACUUM
    then removes every file that still holds their rows."""
    cutoff = at - timedelta(hours=float(cfg.get("privacy.retention_hours")))
    # From its last deletion's commit: the files it removed are then past the retention too.
    finished = (F.coalesce(F.col("finished_at"), F.col("requested_at")) if "finished_at" in columns
                else F.col("requested_at"))
    return F.col("vacuumed_at").isNull() & (finished <= F.lit(cutoff))


def due_tables(spark: SparkSession, cfg: Config, now: datetime) -> list[str]:
    """The tables that deletions due for vacuum changed (empty: nothing due)."""
    path = cfg.table("deletion_receipts")
    if not lakehouse.exists(spark, path):
        return []
    table = lakehouse.read(spark, path)
    rows = (table.where(_due(cfg, now, table.columns))
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
        due = _due(cfg, at, lakehouse.read(spark, receipts).columns)
        DeltaTable.forPath(spark, receipts).update(due, {"vacuumed_at": F.lit(started)})
    return vacuumed
