"""Building the SparkSession with Delta Lake, the same way for the CLI, jobs and tests."""

from __future__ import annotations

import glob
import importlib.metadata
import os
import sys
from contextlib import contextmanager
from typing import Iterator, Mapping

from pyspark.sql import SparkSession

from pipelines.core.config import Config
from pipelines.core.errors import BadInputError

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # MERGE writes one file per partition value instead of one per task and value.
    "spark.databricks.delta.merge.repartitionBeforeWrite.enabled": "true",
}


def local_jars(cfg: Config) -> list[str]:
    """Jar files from `spark.jars_dir` (Delta and the XDM normaliser), or [] when spark-submit
    supplies them."""
    jars_dir = cfg.get("spark.jars_dir", None)
    if not jars_dir:
        return []
    folder = cfg.project_path(jars_dir)
    jars = sorted(glob.glob(os.path.join(folder, "*.jar")))
    if not jars:
        raise BadInputError(
            f"no jars in {folder}; run `make setup` (or set spark.jars_dir=null "
            "and pass them with spark-submit --packages)"
        )
    return jars


def _flatten(conf: dict, prefix: str = "") -> dict[str, str]:
    """spark.conf entries; nested mappings (as `--set spark.conf.spark.x.y=v` makes) become dotted keys."""
    flat: dict[str, str] = {}
    for key, value in conf.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


def build_session(cfg: Config) -> SparkSession:
    """Return the active session if there is one (spark-submit, tests), else a new one."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(cfg.get("spark.app_name"))
    master = cfg.get("spark.master", None)
    if master:
        builder = builder.master(master)
    if master and master.startswith("local"):
        # Python workers run beside the driver: the driver's interpreter has the packages.
        # pyspark reads the variable (not spark.pyspark.python) when it starts the context.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    jars = local_jars(cfg)
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    for key, value in {**DELTA_CONF, **_flatten(cfg.get("spark.conf", {}) or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.get("spark.log_level", "WARN"))
    require_delta(spark)
    return spark


@contextmanager
def settings_applied(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Runtime Spark SQL `settings` while the block runs; then the session's own values
    back (unset where it had none)."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    try:
        for key, value in settings.items():
            spark.conf.set(key, value)
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


@contextmanager
def step_settings(spark: SparkSession, cfg: Config, step: str) -> Iterator[None]:
    """`spark.step_conf.<step>` while the step runs. A setting Spark fixes at start-up is
    refused, by name."""
    settings = _flatten(cfg.get(f"spark.step_conf.{step}", {}) or {})
    fixed = [key for key in settings if not spark.conf.isModifiable(key)]
    if fixed:
        raise BadInputError(f"spark.step_conf.{step}: {fixed[0]} is not a runtime setting; set it in spark.conf")
    with settings_applied(spark, settings):
        yield


def require_delta(spark: SparkSession) -> None:
    """Fail with one clear line when Delta Lake's classes are not on the driver's classpath.

    Under spark-submit the JVM starts before this code runs, so jars named in the session
    builder come too late; they must be passed with --jars or --packages.
    """
    from py4j.protocol import Py4JJavaError

    try:
        spark.sparkContext._jvm.org.apache.spark.util.Utils.classForName(
            "io.delta.tables.DeltaTable", True, False)
    except Py4JJavaError as err:
        version = importlib.metadata.version("delta-spark")
        raise BadInputError(
            "Delta Lake jars are not on Spark's classpath: pass them to spark-submit with "
            f"--jars (the files in .cache/jars) or --packages io.delta:delta-spark_2.13:{version}") from err
