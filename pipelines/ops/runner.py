"""Runs steps for one or more run dates, under the lakehouse lock, recording each step
in the ledger (status, times, outputs, Delta versions read and written)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Callable, Mapping, Sequence

from pyspark.sql import SparkSession

from pipelines.core.clock import utc_now
from pipelines.core.config import Config
from pipelines.core.errors import BadInputError
from pipelines.ops import ledger, orchestration
from pipelines.ops.lock import NightlyLock
from pipelines.core.context import RunContext
from pipelines.core.session import step_settings

log = logging.getLogger("enrich")


@dataclass(frozen=True)
class Request:
    command: str                  # a step's name, nightly or backfill
    run_dates: tuple[date, ...]
    model: str | None = None
    from_step: str | None = None
    only_step: str | None = None  # one step of the night, as a scheduler's task runs it
    force: bool = False
    invocation: str | None = None  # shared by a scheduler's tasks of one night; else a new id


def backfill_dates(first: date, last: date) -> tuple[date, ...]:
    if first > last:
        raise BadInputError(f"backfill --from {first} is after --to {last}")
    return tuple(first + timedelta(days=k) for k in range((last - first).days + 1))


def run(spark: SparkSession, cfg: Config, request: Request, functions: Mapping[str, Callable],
        step_order: Sequence[str], summarise: Callable[[RunContext, dict], None]) -> int:
    invocation = request.invocation or orchestration.new_invocation_id()
    scheduled = request.command in orchestration.SCHEDULED
    holder = {"command": request.command, "run_date": ",".join(d.isoformat() for d in request.run_dates[:1]),
              "token": invocation}
    with NightlyLock(spark, cfg, holder):
        failure = None
        try:
            for day in request.run_dates:
                if not scheduled:
                    _run_date(spark, cfg, request, day, (request.command,), functions, invocation, None)
                    continue
                rows = orchestration.ledger_rows(spark, cfg, day)
                if (request.command == "backfill" and not request.force
                        and orchestration.date_is_done(rows, step_order)):
                    log.info("== %s: done before, skipped (--force reruns it)", day)
                    continue
                steps, why = orchestration.steps_to_run(rows, step_order, request.from_step, request.force,
                                                        request.only_step)
                log.info("== run date %s: %s", day, why)
                # A scheduler's task for an early step leaves the night's summary to the last one.
                ends_night = steps[-1] == step_order[-1]
                carried = orchestration.last_outputs(rows, [s for s in step_order if s not in steps])
                _run_date(spark, cfg, request, day, steps, functions, invocation,
                          (summarise, carried) if ends_night else None)
        except BaseException as err:
            failure = err
            raise
        finally:
            # Whatever the night's outcome: deleted people's rows must not outlive the promised
            # retention because a week of nights was blocked.
            if scheduled and (request.only_step in (None, step_order[-1])):
                _vacuum_after(spark, cfg, failure)
    return 0


def _vacuum_after(spark: SparkSession, cfg: Config, failure: BaseException | None) -> None:
    """`_vacuum_when_due`; after a failed night its own error is logged, and the night's kept."""
    try:
        _vacuum_when_due(spark, cfg)
    except Exception as err:
        if failure is None:
            raise
        log.error("the vacuum of due deletions failed after the night failed: %s",
                  str(err).splitlines()[0] if str(err) else repr(err))


def _run_step(ctx: RunContext, step: str, functions: Mapping[str, Callable]) -> dict:
    """Run one step under its settings and record it in the ledger, failed or not; its outputs."""
    spark, cfg = ctx.spark, ctx.cfg
    ctx.step = step
    reads, writes = ledger.STEP_TABLES.get(step, ((), ()))
    versions_read = ledger.table_versions(spark, cfg, reads)
    started, began = utc_now(), time.monotonic()
    try:
        with step_settings(spark, cfg, step):
            outputs = functions[step](ctx) or {}
    except Exception as err:
        try:
            ledger.record_step(ctx, "failed", started, utc_now(), {"versions_read": versions_read},
                               message=str(err).splitlines()[0] if str(err) else repr(err))
        except Exception as recording:
            # The step's own error decides the exit code (a gate's 3 must not become 1).
            log.error("the failed %s step could not be recorded in the run ledger: %s", step,
                      str(recording).splitlines()[0] if str(recording) else repr(recording))
        raise err
    recorded = {**outputs, "versions_read": versions_read,
                "versions_written": ledger.table_versions(spark, cfg, writes)}
    ledger.record_step(ctx, "succeeded", started, utc_now(), recorded)
    ctx.progress(f"{step} done in {time.monotonic() - began:.1f}s")
    return outputs


def _vacuum_when_due(spark: SparkSession, cfg: Config) -> None:
    """Deleted people's rows leave the old table files once their retention has passed."""
    from pipelines.privacy import forget

    now = utc_now()
    tables = forget.due_tables(spark, cfg, now)
    if tables:
        log.info("== vacuum: deletions past privacy.retention_hours changed %s", ", ".join(tables))
        forget.vacuum(spark, cfg, tables, at=now)


def _run_date(spark: SparkSession, cfg: Config, request: Request, day: date, steps: Sequence[str],
              functions: Mapping[str, Callable], invocation: str, summary) -> None:
    clock = ledger.run_clock(spark, cfg, day, utc_now())
    ctx = RunContext(spark=spark, cfg=cfg, run_date=day, run_id=ledger.new_run_id(day, clock), clock=clock,
                     model=request.model, scheduled=request.command in orchestration.SCHEDULED,
                     invocation=invocation, command=request.command)
    outputs: dict[str, dict] = {}
    for position, step in enumerate(steps, start=1):
        log.info("== %s (%d/%d) run date %s", step, position, len(steps), day)
        outputs[step] = _run_step(ctx, step, functions)
        drifted = outputs[step].get("retrain_for_drift") if ctx.scheduled else None
        if drifted and "train" in functions:
            # Scores that drifted past the error threshold: those models are retrained on the
            # latest snapshots now, and the night is scored again (one retry; see scoring.run).
            log.info("== retraining %s for drift, then scoring again", ", ".join(drifted))
            models = dict(outputs.get("train", {}).get("models", {}))
            for key in drifted:
                models.update(_run_step(replace(ctx, model=key, scheduled=False), "train", functions).get("models", {}))
            ctx.retrained_for_drift = frozenset(drifted)
            outputs["train"] = {**outputs.get("train", {}), "retrained_for_drift": sorted(drifted), "models": models}
            outputs[step] = _run_step(ctx, step, functions)
    if summary is not None:
        summarise, carried = summary
        summarise(ctx, {**carried, **outputs})
