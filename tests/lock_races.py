"""Real processes racing for the nightly lock of one lakehouse (local or on S3): each waits
at a barrier, then tries to take the lock and hold it for two seconds."""

from __future__ import annotations

import multiprocessing
import time

from pipelines.core.config import load_config
from pipelines.core.errors import BadInputError
from pipelines.ops.lock import NightlyLock


def holder(token: str) -> dict:
    return {"command": "nightly", "run_date": "2026-11-28", "token": token}


def _race(overrides: list[str], token: str, start, results) -> None:
    cfg = load_config("local", overrides=overrides)
    start.wait()
    try:
        with NightlyLock(None, cfg, holder(token)):
            results.put((token, "held"))
            time.sleep(2)
    except BadInputError as err:
        results.put((token, f"refused: {err}"))


def run_racers(overrides: list[str], racers: int = 3) -> list[tuple[str, str]]:
    """(token, "held" or "refused: <why>") of each racer; the processes are spawned, so
    they inherit the environment (an S3 server's endpoint) and nothing else."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(racers), context.Queue()
    processes = [context.Process(target=_race, args=(overrides, f"racer{k}", start, results))
                 for k in range(racers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return outcomes
