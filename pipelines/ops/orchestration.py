"""Which steps a nightly runs, and one nightly at a time per lakehouse.

Resume: every invocation of `nightly` or `backfill` stamps its ledger rows with its own
id. The latest such invocation for a run date tells where that night stands: if it
stopped before the last step (a failed step, or a driver killed mid-step, which leaves
no row for it), the next nightly for the date starts at the first step it did not
finish. `--from-step` chooses the start; `--force` starts from the first step anyway.
A scheduler that runs one step per task (`--only-step`) passes one `--invocation` for
all tasks of a night, so they count as one night; a retried step's latest row counts.

Lock: a file `<lakehouse>/ops/nightly.lock`, created only if absent (O_EXCL on a local
disk; Hadoop's create-without-overwrite on HDFS and object stores), naming the holder. A second
run is refused while the holder is alive. A crashed run cannot hold the lakehouse
forever: a lock whose holder process is gone (same host) or older than
`orchestration.lock_stale_after_hours` is taken over, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.sql import SparkSession

from pipelines.core import lakehouse
from pipelines.core.config import Config
from pipelines.core.errors import BadInputError
from pipelines.core.clock import utc_now

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


class NightlyLock:
    """`with NightlyLock(cfg, holder):` — one writer per lakehouse. `holder` names the run
    (command, run_date) and carries a unique `token`."""

    def __init__(self, spark: SparkSession, cfg: Config, holder: Mapping[str, str]):
        self._file = _LockFile(spark, f"{cfg.root.rstrip('/')}/ops/nightly.lock")
        self._stale_after = timedelta(hours=float(cfg.get("orchestration.lock_stale_after_hours")))
        self._holder = {**holder, "host": socket.gethostname(), "pid": str(os.getpid()),
                        "since": utc_now().isoformat(timespec="seconds")}

    def __enter__(self) -> "NightlyLock":
        text = json.dumps(self._holder, sort_keys=True)
        if self._file.create(text):
            return self
        other = _parse(self._file.read())
        if not self._is_stale(other):
            raise BadInputError(
                f"another run holds {self._file.path}: {other.get('command', '?')} of {other.get('run_date', '?')} "
                f"(pid {other.get('pid', '?')} on {other.get('host', '?')}, since {other.get('since', '?')} UTC); "
                "wait for it, or delete the file if that run is certainly gone")
        log.warning("taking over the stale lock %s: %s", self._file.path, json.dumps(other, sort_keys=True))
        self._file.delete()
        if not self._file.create(text):
            raise BadInputError(f"another run took {self._file.path} first")
        return self

    def __exit__(self, *exc) -> None:
        if _parse(self._file.read()).get("token") == self._holder["token"]:
            self._file.delete()

    def _is_stale(self, other: dict) -> bool:
        try:
            since = datetime.fromisoformat(other.get("since", ""))
        except ValueError:
            return True
        if utc_now() - since > self._stale_after:
            return True
        if other.get("host") == socket.gethostname():
            return not _process_alive(int(other.get("pid") or 0))
        return False


def _parse(text: str | None) -> dict:
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"unreadable": text[:200]}


class _LockFile:
    """Create-if-absent, read and delete of one small file: with O_EXCL on a local disk,
    through Hadoop's file system (create without overwrite) elsewhere."""

    def __init__(self, spark: SparkSession, path: str):
        self.path = path
        self._local = "://" not in path or path.startswith("file:")
        if self._local:
            self._os_path = path.removeprefix("file://").removeprefix("file:")
        else:
            jvm = spark.sparkContext._jvm
            self._jpath = jvm.org.apache.hadoop.fs.Path(path)
            self._fs = self._jpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
            self._jvm = jvm
            self._spark = spark

    def create(self, text: str) -> bool:
        if self._local:
            os.makedirs(os.path.dirname(self._os_path), exist_ok=True)
            try:
                handle = os.open(self._os_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            return True
        if self._fs.exists(self._jpath):
            return False
        lakehouse.write_text(self._spark, self.path, text, overwrite=False)
        return True

    def read(self) -> str | None:
        if self._local:
            try:
                with open(self._os_path, encoding="utf-8") as handle:
                    return handle.read()
            except FileNotFoundError:
                return None
        if not self._fs.exists(self._jpath):
            return None
        reader = self._jvm.java.io.BufferedReader(self._jvm.java.io.InputStreamReader(self._fs.open(self._jpath),
                                                                                      "UTF-8"))
        try:
            return reader.readLine()
        finally:
            reader.close()

    def delete(self) -> None:
        if self._local:
            try:
                os.remove(self._os_path)
            except FileNotFoundError:
                return
        else:
            self._fs.delete(self._jpath, False)


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
