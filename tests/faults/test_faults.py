"""Faults at every step of a night, on a real Spark standalone cluster (a master and a
worker on loopback; the package by --py-files and the jars by --jars, as spark-submit
ships them to any cluster), against a clean run of the same landing files.

The nightly is submitted again and again: each submission has its driver killed (SIGKILL)
at the first commit of the next step not yet done, so across the submissions every step
loses its driver mid-step once; and each step loses its executor a few seconds into the run
that finishes it (Spark reruns the lost tasks on the new one). The last submission finishes
the night. The tables must then
be those of the clean run (the fast tier's small night), table for table and value for value:
every table of `lakehouse.tables` but the logs under `ops/`, which a resumed night appends
to by design.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pyspark.sql.functions as F
import pytest
from pyspark.sql import types as T

from pipelines.cli import STEP_ORDER
from pipelines.core import lakehouse
from pipelines.core.config import Config, load_config
from tools.standalone_cluster import PROJECT, ExecutorKiller, StandaloneCluster, run_nightly

from tests.conftest import SMALL_NIGHT

# The faulty nights get the clean night's landing files and options, and the test session's
# partitioning and planning, so values compare one for one; and its Delta snapshot
# partitions, without which every read of a table's log runs Delta's default fifty tasks.
SESSION_SETTINGS = ("spark.sql.shuffle.partitions", "spark.default.parallelism", "spark.sql.adaptive.enabled",
                    "spark.sql.codegen.wholeStage", "spark.sql.codegen.factoryMode",
                    "spark.databricks.delta.snapshotPartitions")


def as_the_test_session(spark) -> list[str]:
    return [arg for key in SESSION_SETTINGS for arg in ("--set", f"spark.conf.{key}={spark.conf.get(key)}")]
# Differ between any two runs by design: when, which run, which registry entry, where (a
# quarantined line's key hashes its file's path).
VOLATILE = ("run_id", "mlflow_run_id", "model_version", "source_file", "file_path", "path", "record_key")


def compared_tables(cfg: Config) -> list[str]:
    """Every table of the conf but the logs under ops/ (the run ledger, check results, the
    ingested-files ledger, deletion receipts), which record each attempt by design."""
    return sorted(name for name, path in cfg.get("lakehouse.tables").items() if not str(path).startswith("ops/"))


def table_contents(spark, cfg: Config, names: list[str]) -> dict[str, list[str]]:
    """Each table as sorted JSON rows, without the columns that differ by design (absent
    tables: None)."""
    contents = {}
    for name in names:
        if not lakehouse.exists(spark, cfg.table(name)):
            contents[name] = None
            continue
        frame = lakehouse.read(spark, cfg.table(name))
        kept = [f.name for f in frame.schema.fields
                if not isinstance(f.dataType, T.TimestampType) and not f.name.endswith(VOLATILE)]
        contents[name] = sorted(r[0] for r in frame.select(F.to_json(F.struct(*kept))).collect())
    return contents


def differences(faulty: dict, clean: dict, shown: int = 3) -> list[str]:
    """Per table that differs: its row counts and the first rows only one side holds."""
    found = []
    for name in sorted(clean):
        if faulty[name] == clean[name]:
            continue
        if faulty[name] is None or clean[name] is None:
            found.append(f"{name}: written by {'the clean' if faulty[name] is None else 'the faulty'} run only")
            continue
        only_faulty = sorted(set(faulty[name]) - set(clean[name]))[:shown]
        only_clean = sorted(set(clean[name]) - set(faulty[name]))[:shown]
        found.append(f"{name}: {len(faulty[name])} rows after the faults, {len(clean[name])} clean; "
                     f"only after the faults: {only_faulty}; only clean: {only_clean}")
    return found


def _commits(root: Path) -> int:
    """Delta commits so far in every table but the run ledger (which records a step at its end)."""
    return sum(1 for log in root.glob("*/*/_delta_log") if log.parent.name != "runs"
               for _ in log.glob("*.json"))


class DriverKiller:
    """Step callback: SIGKILL the driver at the first Delta commit `step` makes (or
    `give_up_after` seconds into it), recording the step running at that moment."""

    def __init__(self, root: Path, step: str, give_up_after: float = 30.0):
        self.root, self.step, self.give_up_after = root, step, give_up_after
        self.killed_in: str | None = None

    def __call__(self, step, driver, current) -> None:
        if step != self.step:
            return
        before = _commits(self.root)

        def strike() -> None:
            deadline = time.monotonic() + self.give_up_after
            while driver.poll() is None and _commits(self.root) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            if driver.poll() is None:
                self.killed_in = current()
                os.killpg(driver.pid, signal.SIGKILL)
        threading.Thread(target=strike, daemon=True).start()


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """What `make dist` ships, built offline: the package (zipped, as --py-files takes it) and
    the XDM jar."""
    folder = tmp_path_factory.mktemp("dist")
    shutil.make_archive(str(folder / "profile_enrichment"), "zip", root_dir=PROJECT, base_dir="pipelines")
    shutil.copy(PROJECT / ".cache" / "jars" / "enrich-xdm.jar", folder)
    return folder


def test_killed_drivers_and_executors_at_every_step_leave_the_tables_of_a_clean_run(spark, small_nightly, dist,
                                                                                   tmp_path):
    root = tmp_path / "lakehouse"
    shutil.copytree(small_nightly.root / "landing", root / "landing")
    args = [f"lakehouse.root={root}" if a.startswith("lakehouse.root=") else a
            for a in small_nightly.args] + as_the_test_session(spark)
    with StandaloneCluster(tmp_path / "spark", cores=2, memory="3g") as cluster:
        # Each step loses its executor once, in the run that finishes it (its second start).
        executors = ExecutorKiller(cluster, on_attempt=2)
        for step in STEP_ORDER:
            driver = DriverKiller(root, step)
            run = run_nightly(cluster, args, dist, on_step=[executors, driver], echo=False)
            assert (run.exit_code, driver.killed_in) == (-signal.SIGKILL, step), run.output[-3000:]
            # It resumed at the step the previous submission died in (from the start at first).
            at = STEP_ORDER.index(step)
            assert run.steps_started == list(STEP_ORDER[max(at - 1, 0):at + 1])
        # The killed driver's lock is stale (its process is gone): taken over, with a warning.
        last = run_nightly(cluster, args, dist, on_step=[executors], echo=False)
        assert last.exit_code == 0, last.output[-3000:]
        assert "taking over the stale lock" in last.output and "resuming at publish" in last.output
        assert last.steps_started == ["publish"]
    # The executor went mid-step in most steps; each time the worker started a new one.
    assert len(executors.killed_in) >= 4, executors.killed_in
    assert last.executors_started >= len(STEP_ORDER) + 1 + len(executors.killed_in)
    cfg = load_config("local", SMALL_NIGHT, overrides=[f"lakehouse.root={root}"])
    finished = (lakehouse.read(spark, cfg.table("runs")).where(F.col("status") == "succeeded")
                .select("step").distinct().collect())
    assert {r["step"] for r in finished} == set(STEP_ORDER)
    names = compared_tables(cfg)
    assert {"bronze_events", "training_sets", "predictions", "profile_enrichment"} <= set(names)
    clean = table_contents(spark, small_nightly.cfg, names)
    assert all(clean[name] for name in ("predictions", "scores", "profile_enrichment")), "the clean night is empty"
    assert differences(table_contents(spark, cfg, names), clean) == []
