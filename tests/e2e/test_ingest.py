"""Ingest on hand-written landing folders: every format and form, exactly once, kill and rerun."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pyspark.sql.functions as F
import pytest

from pipelines.core import lakehouse
from pipelines.cli import main
from pipelines.core.config import load_config
from pipelines.ingest import run as ingest_run

RUN_DATE = date(2026, 3, 1)


def event(event_id: str, day: str, crm: str | None = None, ecid: str = "e-default", **extra) -> dict:
    identity = {"ECID": [{"id": ecid}]}
    if crm:
        identity["CRMID"] = [{"id": crm, "primary": True}]
    return {"_id": event_id, "timestamp": f"{day}T12:00:00Z", "eventType": "web.webpagedetails.pageViews",
            "identityMap": identity, **extra}


def jsonld(record: dict) -> dict:
    """The JSON-LD form of an export-form record (keys prefixed, `_id` as `@id`)."""
    def convert(value, in_map=False):
        if isinstance(value, dict):
            return {(k if in_map else "@id" if k == "_id" else f"xdm:{k}"): convert(v, k == "identityMap")
                    for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value
    return convert(record)


def write_landing(root: Path) -> dict[str, int]:
    """A landing folder with every format; returns how many records each outcome should get."""
    events = root / "landing" / "events"
    (events / "nested").mkdir(parents=True)
    profiles = root / "landing" / "profiles"
    profiles.mkdir(parents=True)
    (events / "plain.json").write_text("\n".join(json.dumps(r) for r in [
        event("a1", "2026-02-01", crm="c1", ecid="e1"),
        event("a2", "2026-02-02", ecid="e1", _acme={"loyalty": "gold"}),
        event("a1", "2026-02-01", crm="c1", ecid="e1"),            # repeated delivery
    ]) + "\n\n")
    with gzip.open(events / "nested" / "jsonld.json.gz", "wt") as out:
        out.write(json.dumps(jsonld(event("b1", "2026-02-03", crm="c2", ecid="e2"))) + "\n")
        out.write('{"_id": "b2", "timestamp": "2026-02-0\n')      # truncated line
    (events / "array.json").write_text(json.dumps(
        [event("c1", "2026-01-15", ecid="e3"), event("c2", "2026-01-16", ecid="e3")], indent=2))
    (events / "truncated-array.json").write_text('[{"_id": "x1", "timestamp": "2026-01-01T00:00:00Z"},')
    (events / "empty.json").write_text("")
    (events / "latin1.json").write_bytes(
        json.dumps(event("d1", "2026-02-04", ecid="e4")).encode().replace(b"pageViews", b"pageViews\xe9") + b"\n")
    typed = json.dumps(event("d2", "2026-02-04", ecid="e4", commerce={"order": {"priceTotal": "ten"}}))
    (events / "typed.json").write_text(typed + "\n")
    table = pa.Table.from_pylist([
        {"_id": "p1", "timestamp": "2026-02-05T08:00:00Z", "eventType": "commerce.productViews",
         "identityMap": [("ECID", [{"id": "e5", "primary": True}])]}],
        schema=pa.schema([("_id", pa.string()), ("timestamp", pa.string()), ("eventType", pa.string()),
                          ("identityMap", pa.map_(pa.string(), pa.list_(pa.struct(
                              [("id", pa.string()), ("primary", pa.bool_())]))))]))
    pq.write_table(table, events / "export.parquet")
    (events / "_SUCCESS").write_text("")
    (profiles / "fragments.json").write_text("\n".join(json.dumps(r) for r in [
        {"_id": "f1", "identityMap": {"CRMID": [{"id": "c1", "primary": True}]},
         "person": {"name": {"firstName": "Ada", "lastName": "Lovelace"}},
         "_repo": {"lastModifiedDate": "2026-01-01T00:00:00Z"}},
        {"_id": "f2", "identityMap": {"CRMID": [{"id": "c1", "primary": True}]},
         "person": {"name": {"firstName": "Augusta"}}, "personalEmail": {"address": "ada@example.com"},
         "_repo": {"lastModifiedDate": "2026-02-01T00:00:00Z"}},
    ]) + "\n")
    return {"records_in": 11, "inserted": 6, "batch_duplicates": 1, "quarantined": 4}


def ingest(root: Path, run_date: date = RUN_DATE) -> int:
    return main(["ingest", "--run-date", run_date.isoformat(), "--set", f"lakehouse.root={root}"])


def ledger_metrics(spark, cfg) -> dict:
    last = (lakehouse.read(spark, cfg.table("runs")).where("step = 'ingest' AND status = 'succeeded'")
            .orderBy(F.col("ended_at").desc()).first())
    return last["metrics"]


def snapshot(spark, cfg, tables=("bronze_events", "bronze_profiles", "quarantine", "identity_graph", "silver_events",
                                 "silver_profiles", "ingested_files")) -> dict[str, list]:
    """Table contents without the columns that name this lakehouse's folder or clock."""
    out = {}
    for name in tables:
        df = lakehouse.read(spark, cfg.table(name))
        drop = [c for c in ("_source_file", "source_file", "record_key", "path", "modified_at", "run_id")
                if c in df.columns]
        out[name] = sorted(json.dumps(r.asDict(recursive=True), default=str, sort_keys=True)
                           for r in df.drop(*drop).collect())
    return out


@pytest.fixture(scope="module")
def landed(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest") / "lakehouse"
    expected = write_landing(root)
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    assert ingest(root) == 0
    return root, cfg, expected


def test_every_format_and_form_is_read_and_every_record_accounted_for(spark, landed):
    root, cfg, expected = landed
    metrics = ledger_metrics(spark, cfg)
    assert {k: int(metrics[f"events_{k}"]) for k in expected} == expected
    assert metrics["events_records_in"] == (metrics["events_inserted"] + metrics["events_already_present"]
                                            + metrics["events_batch_duplicates"] + metrics["events_quarantined"])
    assert metrics["events_files_read"] == 8
    ids = {r["_id"] for r in lakehouse.read(spark, cfg.table("bronze_events")).collect()}
    assert ids == {"a1", "a2", "b1", "c1", "c2", "p1"}


def test_quarantine_names_the_reason_and_the_file(spark, landed):
    _, cfg, _ = landed
    rows = lakehouse.read(spark, cfg.table("quarantine")).collect()
    by_file = {Path(r["source_file"]).name: r["reason"] for r in rows}
    assert by_file["truncated-array.json"].startswith("not a JSON array")
    assert by_file["jsonld.json.gz"].startswith("not JSON: Unexpected end-of-input")
    assert by_file["latin1.json"] == "not UTF-8: invalid byte sequence in the record"
    assert by_file["typed.json"] == "wrong type: commerce.order.priceTotal must be a number, got a string"


def test_unknown_fields_and_the_json_ld_form_land_in_bronze(spark, landed):
    _, cfg, _ = landed
    events = lakehouse.read(spark, cfg.table("bronze_events"))
    assert json.loads(events.where("_id = 'a2'").first()["_rescued_data"]) == {"_acme": {"loyalty": "gold"}}
    b1 = events.where("_id = 'b1'").first()
    assert (b1["primary_namespace"], b1["primary_id"], str(b1["event_date"])) == ("CRMID", "c2", "2026-02-03")


def test_profile_fragments_merge_attribute_by_attribute_most_recent_first(spark, landed):
    _, cfg, _ = landed
    (person,) = lakehouse.read(spark, cfg.table("silver_profiles")).collect()
    assert (person["first_name"], person["last_name"], person["email"], person["fragments"]) == \
        ("Augusta", "Lovelace", "ada@example.com", 2)
    crm_person = lakehouse.read(spark, cfg.table("identity_graph")).where("id = 'c1'").first()["person_id"]
    assert person["person_id"] == crm_person


def test_the_same_landing_folder_twice_reads_nothing_and_changes_nothing(spark, landed):
    root, cfg, _ = landed
    versions = {t: lakehouse.version(spark, cfg.table(t)) for t in ("bronze_events", "quarantine", "identity_graph")}
    assert ingest(root) == 0
    assert ledger_metrics(spark, cfg)["events_files_read"] == 0
    assert {t: lakehouse.version(spark, cfg.table(t)) for t in versions} == versions


def test_a_new_file_brings_late_events_and_redeliveries_are_merged(spark, tmp_path):
    root = tmp_path / "lakehouse"
    write_landing(root)
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    assert ingest(root) == 0
    (root / "landing" / "events" / "late.json").write_text("\n".join(json.dumps(r) for r in [
        event("z1", "2025-12-24", ecid="e1"), event("a1", "2026-02-01", crm="c1", ecid="e1"),
        event("a2", "2026-02-02", ecid="e1", _acme={"loyalty": "platinum"})]) + "\n")   # a corrected a2
    assert ingest(root, date(2026, 3, 2)) == 0
    metrics = ledger_metrics(spark, cfg)
    assert (metrics["events_files_read"], metrics["events_inserted"], metrics["events_already_present"],
            metrics["events_changed_redelivered"]) == (1, 1, 2, 1)
    kept = lakehouse.read(spark, cfg.table("bronze_events")).where("_id = 'a2'").first()["_rescued_data"]
    assert "gold" in kept and "platinum" not in kept   # the first delivery stays
    late = lakehouse.read(spark, cfg.table("bronze_events")).where("event_date = '2025-12-24'")
    assert [r["_id"] for r in late.collect()] == ["z1"]
    silver = lakehouse.read(spark, cfg.table("silver_events"))
    assert silver.where("event_id = 'z1'").first()["person_id"] == silver.where("event_id = 'a1'").first()["person_id"]
    # Each night's bronze files record their ingest date's range, so validation's read of one
    # night skips the files of the others.
    stats = "struct<minValues: struct<_ingest_run_date: date>, maxValues: struct<_ingest_run_date: date>>"
    ranges = {(r["s"]["minValues"]["_ingest_run_date"], r["s"]["maxValues"]["_ingest_run_date"]) for r in
              spark.read.json(f"{cfg.table('bronze_events')}/_delta_log/*.json").where("add IS NOT NULL")
              .select(F.from_json("add.stats", stats).alias("s")).collect()}
    assert ranges == {(RUN_DATE, RUN_DATE), (date(2026, 3, 2), date(2026, 3, 2))}


@pytest.mark.parametrize("crash_in", ["files ledger", "identity graph"])
def test_killed_mid_ingest_a_rerun_leaves_the_tables_of_one_clean_run(spark, landed, tmp_path, monkeypatch,
                                                                     crash_in):
    clean_cfg = landed[1]   # the same landing folder, ingested once without a fault
    crashed_root = tmp_path / "crashed" / "lakehouse"
    write_landing(crashed_root)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt(f"killed while writing the {crash_in}")
    target = ("ledger_rows", ingest_run.landing) if crash_in == "files ledger" else ("_upsert_graph", ingest_run)
    with monkeypatch.context() as patch:
        patch.setattr(target[1], target[0], crash)
        with pytest.raises(KeyboardInterrupt):
            ingest(crashed_root)
    assert ingest(crashed_root) == 0
    clean = snapshot(spark, clean_cfg)
    rerun = snapshot(spark, load_config("local", overrides=[f"lakehouse.root={crashed_root}"]))
    assert rerun == clean


def test_a_truncated_gzip_file_is_quarantined_as_one_record_and_the_others_land(spark, tmp_path):
    root = tmp_path / "lakehouse"
    events = root / "landing" / "events"
    events.mkdir(parents=True)
    (events / "good.json").write_text(json.dumps(event("g1", "2026-02-01", ecid="e1")) + "\n")
    whole = gzip.compress("".join(json.dumps(event(f"t{k}", "2026-02-02", ecid="e2")) + "\n"
                                  for k in range(200)).encode())
    (events / "cut.json.gz").write_bytes(whole[:len(whole) // 2])   # the transfer stopped half-way
    assert ingest(root) == 0
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    (row,) = lakehouse.read(spark, cfg.table("quarantine")).collect()
    assert row["source_file"].endswith("cut.json.gz") and row["reason"].startswith("unreadable file: ")
    assert [r["_id"] for r in lakehouse.read(spark, cfg.table("bronze_events")).collect()] == ["g1"]
    metrics = ledger_metrics(spark, cfg)
    assert (metrics["events_records_in"], metrics["events_inserted"], metrics["events_quarantined"]) == (2, 1, 1)
    assert metrics["events_quarantined[unreadable file]"] == 1
