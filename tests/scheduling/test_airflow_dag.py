"""The nightly Airflow DAG loads, follows the pipeline's step order and renders the right command.

Runs in the Airflow venv (`make dag-check`), where neither pyspark nor `pipelines` is
installed: the step order is read from pipelines/cli.py's source, not imported.
"""

import ast
import copy
import os
import sys
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.api.datamodels._generated import DagRun
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunType

REPO = Path(__file__).resolve().parents[2]
DAG_FOLDER = REPO / "jobs" / "airflow"


def step_order() -> tuple[str, ...]:
    """STEP_ORDER as pipelines/cli.py assigns it."""
    tree = ast.parse((REPO / "pipelines" / "cli.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "STEP_ORDER" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("pipelines/cli.py assigns no STEP_ORDER")


STEP_ORDER = step_order()


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(DAG_FOLDER))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["enrich_nightly"]


def render(task, dag_run: DagRun) -> SparkSubmitOperator:
    """A copy of `task` with its templated fields rendered for `dag_run`, as a worker would."""
    rendered = copy.deepcopy(task)
    rendered.render_template_fields({"dag_run": dag_run, "run_id": dag_run.run_id},
                                    jinja_env=task.dag.get_template_env())
    return rendered


def dag_run(run_id: str, logical_date: datetime | None, run_after: datetime) -> DagRun:
    """The DAG run as the task runner receives it from the API server."""
    return DagRun(dag_id="enrich_nightly", run_id=run_id, logical_date=logical_date,
                  data_interval_start=logical_date, data_interval_end=logical_date, run_after=run_after,
                  start_date=run_after, end_date=None, run_type=DagRunType.SCHEDULED, state=DagRunState.RUNNING,
                  consumed_asset_events=[], partition_key=None)


def test_step_order_is_read_from_the_cli():
    assert STEP_ORDER[0] == "ingest" and STEP_ORDER[-1] == "publish"
    assert len(STEP_ORDER) == len(set(STEP_ORDER)) >= 6


def test_dag_folder_loads_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dags) == ["enrich_nightly"]


def test_dag_file_needs_only_airflow_and_the_standard_library():
    tree = ast.parse((DAG_FOLDER / "enrich_nightly.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert imported - set(sys.stdlib_module_names) <= {"airflow", "pendulum"}


def test_one_spark_submit_task_per_step_in_pipeline_order(dag):
    assert tuple(dag.task_ids) == STEP_ORDER
    for task in dag.tasks:
        assert isinstance(task, SparkSubmitOperator)
        assert task.application.endswith("/jobs/nightly.py")
        args = task.application_args
        assert args[args.index("--only-step") + 1] == task.task_id


def test_each_step_waits_for_the_previous_one(dag):
    assert dag.get_task(STEP_ORDER[0]).upstream_task_ids == set()
    for previous, step in pairwise(STEP_ORDER):
        assert dag.get_task(step).upstream_task_ids == {previous}
    assert dag.get_task(STEP_ORDER[-1]).downstream_task_ids == set()


def test_steps_retry_after_a_delay(dag):
    for task in dag.tasks:
        assert task.retries >= 1
        assert task.retry_delay.total_seconds() > 0


def test_one_night_at_a_time_and_no_catchup_by_default(dag):
    assert dag.max_active_runs == 1
    assert dag.catchup is False


def test_a_scheduled_night_runs_the_step_for_its_logical_date_under_the_run_id(dag):
    night = datetime(2026, 11, 27, 2, 30, tzinfo=timezone.utc)
    run_id = "scheduled__2026-11-27T02:30:00+00:00"
    task = render(dag.get_task("score"), dag_run(run_id, logical_date=night, run_after=night))
    assert task.application_args == ["--env", "cluster", "--run-date", "2026-11-27",
                                     "--only-step", "score", "--invocation", run_id]


def test_a_run_triggered_without_a_logical_date_runs_for_the_day_it_was_triggered(dag):
    triggered = datetime(2026, 11, 28, 9, 5, tzinfo=timezone.utc)
    run_id = "manual__2026-11-28T09:05:00+00:00"
    task = render(dag.get_task("ingest"), dag_run(run_id, logical_date=None, run_after=triggered))
    args = task.application_args
    assert args[args.index("--run-date") + 1] == "2026-11-28"
    assert args[args.index("--invocation") + 1] == run_id


def test_the_spark_submit_command_ships_the_package_and_jars_and_keeps_the_driver_here(dag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "yarn"}')
    night = datetime(2026, 11, 27, 2, 30, tzinfo=timezone.utc)
    task = render(dag.get_task("publish"), dag_run("scheduled__night", logical_date=night, run_after=night))
    command = task._get_hook()._build_spark_submit_command(task.application)
    app = command.index("/opt/enrichment/jobs/nightly.py")
    options = dict(zip(command[1:app:2], command[2:app:2], strict=True))   # spark-submit's own --key value
    assert options["--master"] == "yarn"
    assert options["--deploy-mode"] == "client"
    assert options["--packages"] == "io.delta:delta-spark_2.13:4.0.1"
    assert options["--jars"] == "/opt/enrichment/dist/enrich-xdm.jar"
    assert options["--py-files"] == "/opt/enrichment/dist/profile_enrichment-0.1.0-py3-none-any.whl"
    assert command[app + 1:] == ["--env", "cluster", "--run-date", "2026-11-27",
                                 "--only-step", "publish", "--invocation", "scheduled__night"]


@pytest.mark.parametrize(("exit_code", "fails_at_once"), [(3, True), (2, False), (1, False)])
def test_a_blocked_gate_fails_the_task_at_once_and_other_failures_are_retried(dag, monkeypatch, tmp_path,
                                                                           exit_code, fails_at_once):
    # A spark-submit on PATH that stops the way the pipeline does: 3 blocked gate, 2 bad input or held lock.
    binary = tmp_path / "spark-submit"
    binary.write_text(f"#!/bin/sh\necho 'enrich nightly: stopped'\nexit {exit_code}\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local"}')
    night = datetime(2026, 11, 27, 2, 30, tzinfo=timezone.utc)
    task = render(dag.get_task("score"), dag_run("scheduled__night", logical_date=night, run_after=night))
    with pytest.raises(AirflowException) as raised:
        task.execute(context={})
    assert isinstance(raised.value, AirflowFailException) is fails_at_once
    assert ("blocked the night" in str(raised.value)) is fails_at_once


def test_a_step_that_exits_0_succeeds(dag, monkeypatch, tmp_path):
    binary = tmp_path / "spark-submit"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local"}')
    night = datetime(2026, 11, 27, 2, 30, tzinfo=timezone.utc)
    render(dag.get_task("score"), dag_run("scheduled__night", logical_date=night, run_after=night)).execute(context={})
