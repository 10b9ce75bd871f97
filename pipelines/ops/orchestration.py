"""Which steps a nightly runs, and one nightly at a time per lakehouse.

Resume: every invocation of `nightly` or `backfill` stamps its ledger rows with its own
id. The latest such invocation for a run date tells where that night stands: if it
stopped before the last step (a failed step, or a driver killed mid-step, which leaves
no row for it), the next nightly for the date starts at the first step it did not
finish. `--from-step` chooses the start; `--force` starts from the first step anyway.
A scheduler that runs one step per task (`--only-step`) passes one `--invocation` for
all tasks of a night, so they count as one night; a retried step's latest row counts.

One nightly at a time per lakehouse: see lock.py.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable, Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.sql import SparkSession

from pipelines.core import lakehouse
from pipelines.core.config import Config

log = logging.getLogger("enrich")

SCHEDULED = ("nightly", "backfill")   # invocations whose progress a rerun resumes


def new_invocation_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class LedgerRow:
    invocation: str | None
    command: str | None
    step: str
    status: str
    started_at: datetime
    outputs: Mapping[str, object] | None = None   # metrics and details, as the step reported them


def resume_index(rows: Iterable[LedgerRow], steps: Sequence[str]) -> int:
    """Where a night stands: the index in `steps` of the first step the latest scheduled
    invocation did not finish; len(steps) when it finished them all; 0 when none ran."""
    scheduled = [r for r in rows if r.command in SCHEDULED and r.invocation]
    if not scheduled:
        return 0
    latest = max(scheduled, key=lambda r: r.started_at).invocation
    last_try: dict[str, LedgerRow] = {}
    for row in sorted((r for r in scheduled if r.invocation == latest), key=lambda r: r.started_at):
        last_try[row.step] = row          # a retried step: its latest attempt decides
    ran = sorted(last_try.values(), key=lambda r: steps.index(r.step))
    failed = [r for r in ran if r.status != "succeeded"]
    if failed:
        return steps.index(failed[0].step)
    return steps.index(ran[-1].step) + 1


def ledger_rows(spark: SparkSession, cfg: Config, run_date: date) -> list[LedgerRow]:
    """The ledger rows of one run date (a handful per night: collected on purpose)."""
    path = cfg.table("runs")
    if not lakehouse.exists(spark, path):
        return []
    frame = spark.read.format("delta").load(path).where(F.col("run_date") == F.lit(run_date))
    columns = set(frame.columns)
    # Ledgers written before invocations were recorded have neither column: nothing to resume.
    invocation = F.col("invocation") if "invocation" in columns else F.lit(None).cast("string")
    command = F.col("command") if "command" in columns else F.lit(None).cast("string")
    return [LedgerRow(r["invocation"], r["command"], r["step"], r["status"], r["started_at"],
                      {**dict(r["metrics"] or {}), **json.loads(r["details"] or "{}")})
            for r in frame.select(invocation.alias("invocation"), command.alias("command"), "step", "status",
                                  "started_at", "metrics", "details").collect()]


def steps_to_run(rows: Iterable[LedgerRow], steps: Sequence[str], from_step: str | None,
                 force: bool, only_step: str | None = None) -> tuple[Sequence[str], str]:
    """(the steps this nightly runs, why, in words)."""
    if only_step is not None:
        return (only_step,), f"only {only_step}, as asked"
    if from_step is not None:
        return steps[steps.index(from_step):], f"from {from_step}, as asked"
    if force:
        return steps, "every step (--force)"
    start = resume_index(rows, steps)
    if 0 < start < len(steps):
        return steps[start:], f"resuming at {steps[start]}: the last run of this date stopped there"
    return steps, "every step"


def date_is_done(rows: Iterable[LedgerRow], steps: Sequence[str]) -> bool:
    return resume_index(rows, steps) == len(steps)


def last_outputs(rows: Iterable[LedgerRow], steps: Sequence[str]) -> dict[str, Mapping[str, object]]:
    """What skipped steps reported when they last succeeded (for the summary)."""
    latest: dict[str, Mapping[str, object]] = {}
    for row in sorted(rows, key=lambda r: r.started_at):
        if row.status == "succeeded" and row.step in steps:
            latest[row.step] = row.outputs or {}
    return latest
