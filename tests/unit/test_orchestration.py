"""Where a night resumes, which backfill dates are done, and the one-run-at-a-time lock."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from pipelines.core.config import load_config
from pipelines.core.errors import BadInputError
from pipelines.ops.orchestration import (LedgerRow, date_is_done, last_outputs, resume_index,
                                         steps_to_run)
from pipelines.ops.runner import backfill_dates

STEPS = ("ingest", "validate", "features", "train", "score", "publish")
T0 = datetime(2026, 11, 28, 1, 0)


def _rows(invocation, command, outcomes, start=T0):
    return [LedgerRow(invocation, command, step, status, start + timedelta(minutes=k))
            for k, (step, status) in enumerate(outcomes)]


def _ok(*steps):
    return [(s, "succeeded") for s in steps]


def test_a_night_that_failed_resumes_at_the_failed_step():
    rows = _rows("a", "nightly", _ok("ingest", "validate", "features") + [("train", "failed")])
    assert resume_index(rows, STEPS) == 3
    assert steps_to_run(rows, STEPS, None, False)[0] == ("train", "score", "publish")


def test_a_driver_killed_mid_step_leaves_no_row_and_the_next_step_is_where_it_resumes():
    rows = _rows("a", "nightly", _ok("ingest", "validate"))
    assert steps_to_run(rows, STEPS, None, False)[0] == ("features", "train", "score", "publish")


def test_the_latest_invocation_decides_and_a_resumed_run_that_finishes_completes_the_night():
    first = _rows("a", "nightly", _ok("ingest", "validate", "features") + [("train", "failed")])
    second = _rows("b", "nightly", _ok("train", "score", "publish"), start=T0 + timedelta(hours=1))
    assert date_is_done(first + second, STEPS)
    # A finished night runs every step again when asked (each step is idempotent).
    assert steps_to_run(first + second, STEPS, None, False)[0] == STEPS


def test_single_step_commands_do_not_count_as_a_night():
    rows = _rows("a", "score", _ok("score")) + _rows("b", "nightly", _ok("ingest"), start=T0 - timedelta(hours=1))
    assert resume_index(rows, STEPS) == 1
    assert resume_index(_rows("a", "publish", _ok("publish")), STEPS) == 0
    assert resume_index(_rows(None, None, _ok(*STEPS)), STEPS) == 0   # a ledger from before invocations


def test_from_step_and_force_override_the_resume_point():
    rows = _rows("a", "nightly", _ok("ingest") + [("validate", "failed")])
    assert steps_to_run(rows, STEPS, "score", False)[0] == ("score", "publish")
    assert steps_to_run(rows, STEPS, None, True)[0] == STEPS


def test_a_scheduler_running_one_step_per_task_under_one_invocation_makes_one_night():
    # Airflow: each step is its own task and process; a failed task is retried.
    tasks = _rows("dag-run-1", "nightly", _ok("ingest", "validate") + [("features", "failed")])
    assert resume_index(tasks, STEPS) == 2
    retried = tasks + _rows("dag-run-1", "nightly", _ok("features", "train", "score", "publish"),
                            start=T0 + timedelta(hours=1))
    assert date_is_done(retried, STEPS)
    assert steps_to_run(retried, STEPS, None, False, only_step="score")[0] == ("score",)


def test_skipped_steps_report_what_their_last_success_reported():
    rows = [LedgerRow("a", "nightly", "ingest", "succeeded", T0, {"events_inserted": 5}),
            LedgerRow("b", "nightly", "ingest", "succeeded", T0 + timedelta(hours=1), {"events_inserted": 0}),
            LedgerRow("b", "nightly", "validate", "failed", T0 + timedelta(hours=2), {"dq_checks": 9})]
    assert last_outputs(rows, ("ingest", "validate")) == {"ingest": {"events_inserted": 0}}


def test_backfill_dates_run_in_order_and_a_reversed_range_is_refused():
    assert backfill_dates(date(2026, 11, 27), date(2026, 11, 29)) == (
        date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 29))
    with pytest.raises(BadInputError, match="--from 2026-11-29 is after --to 2026-11-27"):
        backfill_dates(date(2026, 11, 29), date(2026, 11, 27))


@pytest.fixture
def lock_cfg(tmp_path):
    return load_config("local", overrides=[f"lakehouse.root={tmp_path / 'lake'}"])


def test_only_deletions_older_than_the_retention_are_due_for_vacuum(spark, lock_cfg):
    from pipelines.core import lakehouse
    from pipelines.privacy.forget import RECEIPT_SCHEMA, due_tables

    now = datetime(2026, 11, 29, 3, 0)
    receipt = dict(receipt_id="r", request_digest=None, status="done", people=1, identities=2, rows_removed={},
                   finished_at=None, vacuum_after=None, vacuumed_at=None)
    rows = [{**receipt, "requested_at": now - timedelta(hours=200),
             "table_versions": {"bronze_events": 3, "scores": 4}},
            {**receipt, "requested_at": now - timedelta(hours=1), "table_versions": {"segments": 2}},
            {**receipt, "requested_at": now - timedelta(hours=300), "table_versions": {"affinity": 2},
             "vacuumed_at": now - timedelta(hours=100)}]
    lakehouse.append(spark.createDataFrame(rows, RECEIPT_SCHEMA), lock_cfg.table("deletion_receipts"))
    assert due_tables(spark, lock_cfg, now) == ["bronze_events", "scores"]   # 168 hours by default


def _night(spark, cfg, functions, monkeypatch, vacuumed: list):
    from pipelines.ops import runner

    monkeypatch.setattr(runner, "_vacuum_when_due", lambda spark, cfg: vacuumed.append(True))
    request = runner.Request(command="nightly", run_dates=(date(2026, 6, 1),))
    return runner.run(spark, cfg, request, functions, ("ingest", "publish"), lambda ctx, outputs: None)


def test_a_blocked_night_keeps_exit_3_when_its_failure_cannot_be_recorded(spark, lock_cfg, monkeypatch):
    from pipelines.core.errors import GateError
    from pipelines.ops import ledger

    def record(ctx, status, *args, **kwargs):
        if status == "failed":
            raise OSError("the ledger's storage is gone")
    monkeypatch.setattr(ledger, "record_step", record)

    def blocked(ctx):
        raise GateError("data-quality gate: 1 check(s) failed")
    vacuumed = []
    with pytest.raises(GateError, match="data-quality gate"):
        _night(spark, lock_cfg, {"ingest": blocked, "publish": lambda ctx: {}}, monkeypatch, vacuumed)
    # The vacuum of due deletions runs whatever the night's outcome.
    assert vacuumed == [True]
