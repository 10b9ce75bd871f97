"""Airflow DAG for the nightly run: one spark-submit task per step, chained in STEP_ORDER.

Each task runs

    spark-submit ... jobs/nightly.py --env cluster --run-date <date> --only-step <step> --invocation <run_id>

so every task of one DAG run is recorded under one invocation and counts as one night:
a retried or cleared task resumes that night instead of starting a new one. The run date
is the DAG run's logical date (UTC): with the cron trigger below, the night of 27 Nov
2026 runs on 2026-11-27, as the cron line in the README does.

Deployment settings, read from the environment of the DAG processor and the workers:

    ENRICH_HOME           checkout (or copy) holding jobs/, conf/ and dist/   /opt/enrichment
    ENRICH_PY_FILES       the package wheel from `make dist`, for --py-files
                          $ENRICH_HOME/dist/profile_enrichment-0.1.0-py3-none-any.whl
    ENRICH_JARS           --jars, comma-separated                        $ENRICH_HOME/dist/enrich-xdm.jar
                          (add cached Delta jars here and set ENRICH_PACKAGES to "")
    ENRICH_PACKAGES       --packages, Maven coordinates              io.delta:delta-spark_2.13:4.0.1
    ENRICH_SPARK_CONN_ID  Airflow Spark connection (master, spark-submit binary)     spark_default
    ENRICH_CONF           extra conf overlays, comma-separated absolute paths, each passed as
                          --conf FILE after --env cluster (e.g. the lakehouse root)     (none)
    ENRICH_SCHEDULE       cron expression, UTC; "" or "none" for manual runs only     30 2 * * *
    ENRICH_START_DATE     first night the scheduler may run, YYYY-MM-DD               2026-01-01
    ENRICH_CATCHUP        "true" to run every missed night since the start date        false

This file imports only Airflow and the Spark provider, never `pipelines`: the Airflow
machines need not have the package installed, only the paths above.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronTriggerTimetable, chain
from airflow.sdk.exceptions import AirflowException, AirflowFailException

# Same order as pipelines/cli.py's STEP_ORDER (tests/scheduling checks it).
STEPS = ("ingest", "validate", "features", "train", "score", "publish")

HOME = os.environ.get("ENRICH_HOME", "/opt/enrichment")
PY_FILES = os.environ.get("ENRICH_PY_FILES", f"{HOME}/dist/profile_enrichment-0.1.0-py3-none-any.whl")
JARS = os.environ.get("ENRICH_JARS", f"{HOME}/dist/enrich-xdm.jar")
PACKAGES = os.environ.get("ENRICH_PACKAGES", "io.delta:delta-spark_2.13:4.0.1")
CONN_ID = os.environ.get("ENRICH_SPARK_CONN_ID", "spark_default")
CONF_OVERLAYS = [path.strip() for path in os.environ.get("ENRICH_CONF", "").split(",") if path.strip()]
SCHEDULE = os.environ.get("ENRICH_SCHEDULE", "30 2 * * *").strip()
START_DATE = pendulum.parse(os.environ.get("ENRICH_START_DATE", "2026-01-01"), tz="UTC")
CATCHUP = os.environ.get("ENRICH_CATCHUP", "false").strip().lower() in ("1", "true", "yes")

# The pipeline's exit code for a night stopped by a blocking quality gate (README, exit codes).
GATE_BLOCKED = 3


class NightlyStepOperator(SparkSubmitOperator):
    """One step of the night. A quality gate that blocked it (exit 3) blocks again on every
    try until the data or the conf change, so the task fails at once instead of spending its
    retries; any other failure (a held lock, a lost executor) is retried."""

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowException as err:
            # The provider reports the exit code only in its message; its process has it.
            process = getattr(self._hook, "_submit_sp", None)
            if process is not None and process.returncode == GATE_BLOCKED:
                raise AirflowFailException(
                    f"{self.task_id}: a quality gate blocked the night (exit {GATE_BLOCKED}); retrying cannot "
                    "unblock it: see the run's report, fix the data or the conf, then clear the task") from err
            raise


# A run triggered by hand may have no logical date (Airflow 3); it then runs for the day
# it was triggered, UTC, as `enrich nightly` without --run-date does.
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

with DAG(
    dag_id="enrich_nightly",
    description="Nightly profile enrichment: ingest, validate, features, train, score, publish",
    # A trigger timetable pins the logical date to the night itself, whatever the
    # deployment's create_cron_data_intervals says.
    schedule=CronTriggerTimetable(SCHEDULE, timezone="UTC") if SCHEDULE.lower() not in ("", "none") else None,
    start_date=START_DATE,
    catchup=CATCHUP,
    # One night at a time, in date order; the pipeline's lakehouse lock guards the rest.
    max_active_runs=1,
    default_args={
        # Exit 2 from a held lock, or a lost executor, clears on a later try, and a step
        # rerun under the same invocation resumes safely. A blocked gate (exit 3) fails at
        # once (NightlyStepOperator).
        "retries": 3,
        "retry_delay": timedelta(minutes=15),
    },
    tags=["enrichment", "spark"],
) as dag:
    tasks = [
        NightlyStepOperator(
            task_id=step,
            conn_id=CONN_ID,
            # Client mode: the driver reads conf/ from ENRICH_HOME on this worker, and
            # spark-submit exits with the job's own code (0, 2, 3, 1).
            deploy_mode="client",
            application=f"{HOME}/jobs/nightly.py",
            py_files=PY_FILES or None,
            jars=JARS or None,
            packages=PACKAGES or None,
            env_vars={"ENRICH_HOME": HOME},
            name=f"enrich-{step}",
            application_args=[
                "--env", "cluster",
                *[arg for path in CONF_OVERLAYS for arg in ("--conf", path)],
                "--run-date", RUN_DATE,
                "--only-step", step,
                "--invocation", "{{ run_id }}",
            ],
        )
        for step in STEPS
    ]
    chain(*tasks)
