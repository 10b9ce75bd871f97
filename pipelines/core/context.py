"""What every step receives: the session, the configuration, the run date and a logger."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime

from pyspark.sql import SparkSession

from pipelines.core.config import Config

log = logging.getLogger("enrich")


@dataclass
class RunContext:
    spark: SparkSession
    cfg: Config
    run_date: date
    run_id: str
    clock: datetime           # the run's time: the first start recorded for this run date
    step: str = ""
    model: str | None = None  # `enrich train --model NAME`: only that model
    scheduled: bool = False   # the nightly: models retrain on their cadence, not every run
    invocation: str = ""      # this `enrich` command run's id, on its ledger rows
    command: str = ""         # nightly, backfill, or a step's name
    # Models retrained tonight because their scores drifted: if they still drift, they are skipped.
    retrained_for_drift: frozenset[str] = frozenset()
    _t0: float = field(default_factory=time.monotonic)

    def progress(self, message: str) -> None:
        """One line of progress: step, elapsed seconds, what happens now."""
        log.info("[%s %5.1fs] %s", self.step or "run", time.monotonic() - self._t0, message)
