"""Shared fixtures: one SparkSession for the whole suite, a fresh lakehouse folder per test."""

from __future__ import annotations

import glob
import os
import sys

import pytest
from pyspark.sql import SparkSession

from pipelines.core.config import PROJECT_ROOT, load_config
from pipelines.core.session import DELTA_CONF

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)   # pandas UDFs need this interpreter's numpy
# Model files a checkout keeps in conf/custom must not change what the tests see.
os.environ["ENRICH_CUSTOM_DIR"] = ""


@pytest.fixture(scope="session")
def spark():
    jars = sorted(glob.glob(str(PROJECT_ROOT / ".cache" / "jars" / "*.jar")))
    assert jars, "Delta jars missing: run `make setup`"
    builder = (SparkSession.builder.master("local[2]").appName("enrich-tests")
               .config("spark.jars", ",".join(jars))
               .config("spark.sql.shuffle.partitions", "2")
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
