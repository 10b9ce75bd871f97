"""Shared fixtures: one SparkSession for the whole suite, a fresh lakehouse folder per test,
the small nightly; and the tiers.

Tiers are given by place, so a new test lands in one without being marked: everything in
tests/unit and the e2e tests of the small nightly (the `small_nightly` fixture) are `fast`,
the tier `make test` runs; the rest (tests/component, the e2e lakehouse, tests/matrix,
tests/faults) is `slow`. `make check` runs both.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from hypothesis import settings
from pyspark.sql import SparkSession

from pipelines.core.config import PROJECT_ROOT, Config, load_config
from pipelines.core.session import DELTA_CONF

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)   # pandas UDFs need this interpreter's numpy
# Model files a checkout keeps in conf/custom must not change what the tests see.
os.environ["ENRICH_CUSTOM_DIR"] = ""

# Property tests try a few cases in the fast tier and many in `make check`.
settings.register_profile("fast", max_examples=5, deadline=None)
settings.register_profile("thorough", max_examples=40, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "thorough"))

TESTS = Path(__file__).parent
SMALL_NIGHT = [str(TESTS / "e2e" / "custom_models.yaml"), str(TESTS / "small_night.yaml")]
SMALL_NIGHT_DATE = date(2026, 6, 1)


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(item.fspath).relative_to(TESTS).parts[0]
        fast = folder == "unit" or (folder == "e2e" and "small_nightly" in getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.fast if fast else pytest.mark.slow)


@pytest.fixture(scope="session")
def spark():
    jars = sorted(glob.glob(str(PROJECT_ROOT / ".cache" / "jars" / "*.jar")))
    assert jars, "Delta jars missing: run `make setup`"
    builder = (SparkSession.builder.master("local[2]").appName("enrich-tests")
               .config("spark.jars", ",".join(jars))
               .config("spark.sql.shuffle.partitions", "2")
               # Re-planning after every shuffle cannot pay off on frames of a few rows.
               .config("spark.sql.adaptive.enabled", "false")
               .config("spark.default.parallelism", "2")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.databricks.delta.snapshotPartitions", "1")
               .config("spark.driver.memory", "3g")
               .config("spark.driver.extraJavaOptions", "-XX:+UseParallelGC")   # as conf/local.yaml
               # Test frames are tiny, so compiling generated code for each new plan costs more
               # than it saves (about a fifth of an e2e night): the same plans run interpreted.
               .config("spark.sql.codegen.wholeStage", "false")
               .config("spark.sql.codegen.factoryMode", "NO_CODEGEN"))
    for key, value in DELTA_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path):
    """Configuration whose lakehouse lives in this test's temporary folder."""
    return load_config("local", overrides=[f"lakehouse.root={tmp_path / 'lakehouse'}"])


@dataclass
class SmallNight:
    root: Path
    cfg: Config
    args: list[str]
    exit_code: int
    stdout: str


@pytest.fixture(scope="session")
def small_nightly(spark, tmp_path_factory) -> SmallNight:
    """One nightly of 500 generated people with the built-in models at their cheapest and a
    custom regressor (SMALL_NIGHT): the main path, end to end, in the fast tier; and the clean
    night the fault test compares a resumed one with."""
    from pipelines.cli import main

    root = tmp_path_factory.mktemp("small") / "lakehouse"
    args = ["--run-date", SMALL_NIGHT_DATE.isoformat(), "--set", f"lakehouse.root={root}",
            *[arg for path in SMALL_NIGHT for arg in ("--conf", path)]]
    # Two landing files a kind: one task each on the session's two cores.
    assert main(["generate", "--profiles", "500", "--days", "240", "--seed", "11", *args,
                 "--set", "generate.files=2"]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["nightly", *args])
    return SmallNight(root, load_config("local", SMALL_NIGHT, overrides=[f"lakehouse.root={root}"]), args, code,
                      out.getvalue())
