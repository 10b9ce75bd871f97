"""`enrich forget` removes a person and every linked identity from every table, leaves a
receipt without personal data, and after `vacuum` no data file holds them. Runs on a copy
of the nightly's lakehouse, so the other tests keep theirs."""

from __future__ import annotations

import hashlib
import shutil
from functools import reduce
from pathlib import Path

import pyspark.sql.functions as F
import pytest

from pipelines.core import lakehouse
from pipelines.cli import main
from pipelines.core.config import load_config
from pipelines.xdm.identity_map import identities


@pytest.fixture(scope="module")
def copy(nightly, tmp_path_factory):
    root = tmp_path_factory.mktemp("forget") / "lakehouse"
    shutil.copytree(nightly.root, root)
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    return root, cfg, ["--set", f"lakehouse.root={root}"]


@pytest.fixture(scope="module")
def subject(spark, copy):
    """A scored person with several identities, asked for by one that is not the primary."""
    _, cfg, _ = copy
    graph = lakehouse.read(spark, cfg.table("identity_graph"))
    profiles = lakehouse.read(spark, cfg.table("profile_enrichment"))
    sizes = graph.groupBy("person_id").count().where("count >= 3")
    person = (profiles.join(sizes, "person_id").where(F.col("convert_probability").isNotNull())
              .orderBy("person_id").first())
    linked = graph.where(F.col("person_id") == person["person_id"]).collect()
    asked = next(r for r in linked if (r["namespace"], r["id"]) != (person["primary_identity_namespace"],
                                                                     person["primary_identity_id"]))
    return person["person_id"], {(r["namespace"], r["id"]) for r in linked}, f"{asked['namespace']}:{asked['id']}"


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
    for column in ("raw", "samples", "observed"):
        if column in frame.columns:
            tests += [F.coalesce(F.instr(F.col(column), i) > 0, F.lit(False)) for i in ids]
    return frame.where(reduce(lambda a, b: a | b, tests)) if tests else frame.limit(0)


def test_forget_removes_the_person_from_every_table_and_leaves_a_receipt(spark, copy, subject, capsys):
    root, cfg, args = copy
    person, pairs, asked = subject
    before = {name: lakehouse.version(spark, cfg.table(name)) for name in cfg.get("lakehouse.tables")}
    held_before = _holding(lakehouse.read(spark, cfg.table("bronze_events")), person, pairs).count()
    assert held_before > 0
    assert main(["forget", "--identity", asked, *args]) == 0
    assert f"forgot 1 person(s) and {len(pairs)} identities" in capsys.readouterr().out
    for name, version in before.items():
        if version is None:
            continue
        assert _holding(lakehouse.read(spark, cfg.table(name)), person, pairs).count() == 0, name
    # Time travel still reaches the old rows: that is what vacuum is for.
    old = spark.read.format("delta").option("versionAsOf", before["bronze_events"]).load(cfg.table("bronze_events"))
    assert _holding(old, person, pairs).count() == held_before
    receipt = lakehouse.read(spark, cfg.table("deletion_receipts")).first()
    assert receipt["people"] == 1 and receipt["rows_removed"]["bronze_events"] == held_before
    assert receipt["request_sha256"] == hashlib.sha256(asked.encode()).hexdigest()
    text = str(receipt.asDict())
    assert not any(i in text for _, i in pairs) and person not in text


def test_after_vacuum_no_data_file_holds_the_person(spark, copy, subject):
    root, cfg, args = copy
    person, pairs, _ = subject
    assert main(["vacuum", *args, "--set", "privacy.retention_hours=0"]) == 0
    for name in cfg.get("lakehouse.tables"):
        folder = Path(cfg.table(name))
        # Data files and change-feed files; the log's checkpoints hold file statistics, not rows.
        files = [str(f) for f in folder.rglob("*.parquet") if "_delta_log" not in f.parts] if folder.exists() else []
        if not files:
            continue
        every_file = spark.read.option("mergeSchema", "true").parquet(*files)
        assert _holding(every_file, person, pairs).count() == 0, name
    assert lakehouse.read(spark, cfg.table("deletion_receipts")).first()["vacuumed_at"] is not None


def test_forgetting_an_identity_nobody_holds_deletes_nothing_and_says_so(copy, capsys):
    _, _, args = copy
    assert main(["forget", "--identity", "CRMID:nobody-has-this", *args]) == 0
    assert "no person holds CRMID:nobody-has-this: nothing deleted" in capsys.readouterr().out
