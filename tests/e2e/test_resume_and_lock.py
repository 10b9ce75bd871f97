"""The nightly resumes a stopped night, backfill skips done dates, and a second writer is
refused; on a copy of the e2e lakehouse, whose night is done."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

import pyspark.sql.functions as F
import pytest

from pipelines.core import lakehouse
from pipelines.cli import main
from pipelines.core.clock import utc_now
from pipelines.ops import ledger
from pipelines.core.context import RunContext

from .conftest import RUN_DATE, copy_of


@pytest.fixture(scope="module")
def lakehouse_copy(nightly, tmp_path_factory):
    return copy_of(nightly, tmp_path_factory.mktemp("resume"))


def _invocations(spark, lakehouse_copy):
    runs = lakehouse.read(spark, lakehouse_copy.cfg.table("runs")).where(F.col("run_date") == F.lit(RUN_DATE))
    return {r["invocation"]: r for r in runs.groupBy("invocation").agg(
        F.sort_array(F.collect_list(F.struct("started_at", "step", "status"))).alias("steps"),
        F.first("command").alias("command")).collect()}


def test_a_night_stopped_at_publish_resumes_there_and_says_so(spark, lakehouse_copy, capsys):
    # What a nightly that failed in publish leaves in the ledger (the step raised, its row says so).
    # Publish is the last step, so resuming runs it alone; stopping at score would add a minute.
    clock = ledger.run_clock(spark, lakehouse_copy.cfg, RUN_DATE, utc_now())
    stopped = RunContext(spark=spark, cfg=lakehouse_copy.cfg, run_date=RUN_DATE,
                         run_id=ledger.new_run_id(RUN_DATE, clock), clock=clock, step="publish",
                         invocation="stopped-run", command="nightly")
    now = utc_now()
    ledger.record_step(stopped, "failed", now, now + timedelta(seconds=1), message="executor lost")
    before = set(_invocations(spark, lakehouse_copy))
    assert main(["nightly", *lakehouse_copy.args]) == 0
    (new,) = set(_invocations(spark, lakehouse_copy)) - before
    run = _invocations(spark, lakehouse_copy)[new]
    assert [(s["step"], s["status"]) for s in run["steps"]] == [("publish", "succeeded")]
    captured = capsys.readouterr()
    assert "resuming at publish" in captured.err and "profile table:" in captured.out
    # The resumed run recorded the Delta versions its steps read and wrote.
    publish = (lakehouse.read(spark, lakehouse_copy.cfg.table("runs"))
               .where((F.col("invocation") == new) & (F.col("step") == "publish")).first())
    details = json.loads(publish["details"])
    assert details["versions_written"]["profile_enrichment"] == lakehouse.version(
        spark, lakehouse_copy.cfg.table("profile_enrichment"))
    assert set(details["versions_read"]) >= {"scores", "identity_graph"}


def test_backfill_skips_a_date_that_is_done(spark, lakehouse_copy, capsys):
    before = lakehouse.read(spark, lakehouse_copy.cfg.table("runs")).count()
    day = RUN_DATE.isoformat()
    assert main(["backfill", "--from", day, "--to", day, *lakehouse_copy.args[2:]]) == 0
    assert f"{day}: done before, skipped" in capsys.readouterr().err
    assert lakehouse.read(spark, lakehouse_copy.cfg.table("runs")).count() == before


def test_a_step_while_another_run_holds_the_lock_exits_2_naming_the_holder(lakehouse_copy, capsys):
    folder = lakehouse_copy.root / "ops" / "nightly_lock"
    folder.mkdir(parents=True, exist_ok=True)
    latest = max((int(p.stem) for p in folder.glob("*.json")), default=0)
    generation = folder / f"{latest + 1:012d}.json"   # the next generation: held by a live run
    now = datetime.utcnow().isoformat(timespec="seconds")
    generation.write_text(json.dumps({"command": "nightly", "run_date": "2026-06-02", "pid": str(os.getpid()),
                                      "host": os.uname().nodename, "token": "other", "since": now,
                                      "heartbeat": now}))
    try:
        assert main(["publish", *lakehouse_copy.args]) == 2
    finally:
        generation.unlink()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "another run holds" in lines[0] and "nightly of 2026-06-02" in lines[0]
