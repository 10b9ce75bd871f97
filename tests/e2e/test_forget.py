"""`enrich forget` removes a person and every linked identity from every table, redacts what
quotes them, leaves a receipt without personal data, and after `vacuum` nothing in the
lakehouse (tables, their logs, change feed, reports, Data Docs, the run ledger) quotes them.
Runs on a copy of the nightly's lakehouse, so the other tests keep theirs."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from contextlib import redirect_stdout
from functools import reduce
from pathlib import Path

import pyarrow.parquet as pq
import pyspark.sql.functions as F
import pytest

from pipelines.cli import main
from pipelines.core import lakehouse
from pipelines.core.config import load_config
from pipelines.privacy import forget
from pipelines.xdm.identity_map import identities

from .conftest import copy_of

KEY = "receipts-are-keyed"


@pytest.fixture(scope="module")
def lake(nightly, tmp_path_factory):
    return copy_of(nightly, tmp_path_factory.mktemp("forget"))


@pytest.fixture(scope="module")
def subject(spark, lake):
    """A scored person with an e-mail among several identities, asked for by that e-mail in
    capitals and with spaces around it; and every text that quotes them."""
    graph = lakehouse.read(spark, lake.cfg.table("identity_graph"))
    profiles = lakehouse.read(spark, lake.cfg.table("profile_enrichment"))
    sizes = graph.groupBy("person_id").count().where("count >= 3")
    emails = graph.where(F.col("namespace") == "Email").select("person_id", F.col("id").alias("email"))
    person = (profiles.join(sizes, "person_id").join(emails, "person_id")
              .where(F.col("convert_probability").isNotNull()).orderBy("person_id").first())
    linked = graph.where(F.col("person_id") == person["person_id"]).collect()
    pairs = {(r["namespace"], r["id"]) for r in linked}
    names = lakehouse.read(spark, lake.cfg.table("silver_profiles"))
    texts = {i for _, i in pairs}
    full = names.where(F.col("person_id") == person["person_id"]).select("full_name").first()
    if full and full[0] and names.where(F.col("full_name") == full[0]).count() == 1:
        texts.add(full[0])   # a name shared with others would be found in their rows
    return person["person_id"], pairs, f"EMAIL: {person['email'].upper()} ", texts


@pytest.fixture(scope="module")
def forgotten(spark, lake, subject):
    """The request, as a user makes it, then the vacuum; what each printed, and the tables'
    versions and rows holding the person before."""
    person, pairs, asked, _ = subject
    with pytest.MonkeyPatch.context() as env:
        env.setenv(forget.RECEIPT_KEY_ENV, KEY)
        before = {name: lakehouse.version(spark, lake.cfg.table(name)) for name in lake.cfg.get("lakehouse.tables")}
        held = _holding(lakehouse.read(spark, lake.cfg.table("bronze_events")), person, pairs).count()
        out = io.StringIO()
        with redirect_stdout(out):
            code = main(["forget", "--identity", asked, "--set", f"lakehouse.root={lake.root}"])
        printed = out.getvalue()
        receipts = lakehouse.read(spark, lake.cfg.table("deletion_receipts")).collect()
        vacuumed = main(["vacuum", "--set", f"lakehouse.root={lake.root}", "--set", "privacy.retention_hours=0"])
    return {"code": code, "printed": printed, "before": before, "held": held, "receipts": receipts,
            "vacuumed": vacuumed}


def _holding(frame, person, pairs):
    """Rows of `frame` that hold the person, by whichever columns it has."""
    ids = {i for _, i in pairs} | {person}
    tests = []
    if "person_id" in frame.columns:
        tests.append(F.col("person_id") == person)
    for column in ("merged_person_id", "surviving_person_id"):
        if column in frame.columns:
            tests.append(F.col(column) == person)
    if "identityMap" in frame.columns:
        tests.append(F.exists(identities(F.col("identityMap")), lambda i: i["id"].isin(list(ids))))
    if {"namespace", "id"} <= set(frame.columns):
        tests.append(F.col("id").isin(list(ids)))
    for column in ("raw", "samples", "observed", "details", "message"):
        if column in frame.columns:
            tests += [F.coalesce(F.instr(F.col(column), i) > 0, F.lit(False)) for i in ids]
    return frame.where(reduce(lambda a, b: a | b, tests)) if tests else frame.limit(0)


def test_forget_removes_the_person_from_every_table_and_leaves_a_keyed_receipt(spark, lake, subject, forgotten):
    person, pairs, asked, _ = subject
    assert forgotten["code"] == 0 and forgotten["held"] > 0
    assert f"forgot 1 person(s) and {len(pairs)} identities" in forgotten["printed"]
    for name, version in forgotten["before"].items():
        if version is not None:
            assert _holding(lakehouse.read(spark, lake.cfg.table(name)), person, pairs).count() == 0, name
    (receipt,) = forgotten["receipts"]
    assert receipt["status"] == "done" and receipt["people"] == 1
    assert receipt["rows_removed"]["bronze_events"] == forgotten["held"]
    email = next(i for ns, i in pairs if ns == "Email")
    assert receipt["request_digest"] == hmac.new(KEY.encode(), f"Email:{email}".encode(), hashlib.sha256).hexdigest()
    text = str(receipt.asDict())
    assert not any(i in text for _, i in pairs) and person not in text


def test_no_commit_of_any_table_names_an_identity(lake, subject, forgotten):
    _, pairs, _, _ = subject
    logs = [f for f in lake.root.rglob("_delta_log/*.json")]
    assert logs
    quoted = [str(f) for f in logs if any(i in f.read_text() for _, i in pairs)]
    assert quoted == []


def _texts_in(path: Path) -> str:
    """What a file holds, as text: a Parquet file's rows as JSON, any other file's bytes."""
    if path.suffix == ".parquet":
        return json.dumps(pq.read_table(path).to_pylist(), default=str)
    return path.read_bytes().decode("latin-1")


def test_after_vacuum_nothing_in_the_lakehouse_quotes_the_person(lake, subject, forgotten):
    _, _, _, texts = subject
    assert forgotten["vacuumed"] == 0
    # Everything but the landing folder, which is the source's export (delete there too).
    files = [f for f in lake.root.rglob("*") if f.is_file() and "landing" not in f.relative_to(lake.root).parts]
    found = {str(f.relative_to(lake.root)): sorted(t for t in texts if t in _texts_in(f)) for f in files}
    assert {f: t for f, t in found.items() if t} == {}
    assert len(files) > 100


def _tiny(root: Path, lines: list[dict]):
    (root / "landing" / "events").mkdir(parents=True)
    (root / "landing" / "events" / "part-0.json").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert main(["ingest", "--run-date", "2026-06-01", "--set", f"lakehouse.root={root}"]) == 0
    return load_config("local", overrides=[f"lakehouse.root={root}"])


def _event(event_id: str, email: str, **extra) -> dict:
    return {"_id": event_id, "timestamp": "2026-05-30T10:00:00Z", "eventType": "commerce.productViews",
            "identityMap": {"Email": [{"id": email, "primary": True}]}, **extra}


def test_a_person_whose_every_record_was_quarantined_is_found_in_quarantine(spark, tmp_path, capsys):
    root = tmp_path / "lakehouse"
    cfg = _tiny(root, [_event("ok", "someone@example.com"),
                       _event("bad", "only.quarantined@example.com", commerce={"order": {"priceTotal": "ten"}})])
    assert main(["forget", "--identity", "Email:only.quarantined@example.com", "--set", f"lakehouse.root={root}"]) == 0
    assert "1 quarantined records that quoted it removed" in capsys.readouterr().out
    assert lakehouse.read(spark, cfg.table("quarantine")).count() == 0
    assert lakehouse.read(spark, cfg.table("bronze_events")).count() == 1


def test_ids_that_differ_only_in_case_are_other_people_outside_the_case_insensitive_namespaces(spark, tmp_path):
    root = tmp_path / "lakehouse"
    crm = [{"CRMID": [{"id": crm_id, "primary": True}]} for crm_id in ("Case-A1", "case-a1")]
    cfg = _tiny(root, [{**_event("upper", "x@example.com"), "identityMap": crm[0]},
                       {**_event("lower", "y@example.com"), "identityMap": crm[1]}])
    assert main(["forget", "--identity", "CRMID:Case-A1", "--set", f"lakehouse.root={root}"]) == 0
    assert [r["_id"] for r in lakehouse.read(spark, cfg.table("bronze_events")).collect()] == ["lower"]


def test_a_forget_stopped_part_way_is_finished_by_the_same_request(spark, tmp_path, monkeypatch):
    root = tmp_path / "lakehouse"
    cfg = _tiny(root, [_event("a", "stopped@example.com"), _event("b", "other@example.com")])
    monkeypatch.setenv(forget.RECEIPT_KEY_ENV, KEY)

    def crash(*args):
        raise RuntimeError("the driver went away")
    with monkeypatch.context() as broken:
        broken.setattr(forget, "_redact_files", crash)
        assert main(["forget", "--identity", "Email:stopped@example.com", "--set", f"lakehouse.root={root}"]) == 1
    (started,) = lakehouse.read(spark, cfg.table("deletion_receipts")).collect()
    assert started["status"] == "started" and started["table_versions"]
    assert main(["forget", "--identity", "Email:stopped@example.com", "--set", f"lakehouse.root={root}"]) == 0
    (done,) = lakehouse.read(spark, cfg.table("deletion_receipts")).collect()
    assert (done["receipt_id"], done["status"], done["people"]) == (started["receipt_id"], "done", 1)
    assert lakehouse.read(spark, cfg.table("identity_graph")).where("id = 'stopped@example.com'").count() == 0


def test_forgetting_an_identity_nobody_holds_deletes_nothing_and_says_so(lake, capsys):
    assert main(["forget", "--identity", "CRMID:nobody-has-this", "--set", f"lakehouse.root={lake.root}"]) == 0
    assert "no person holds CRMID:nobody-has-this" in capsys.readouterr().out
