"""Bad input exits 2 with one clear line; a blocked gate exits 3 and stops the run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyspark.sql.functions as F
import pytest

from pipelines.core import lakehouse
from pipelines.cli import main
from pipelines.core.config import PROJECT_ROOT, load_config

ENRICH = str(Path(sys.executable).parent / "enrich")
SPARK_SUBMIT = str(Path(sys.executable).parent / "spark-submit")


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("argv, fragment", [
    (["ingest", "--bogus"], "unrecognized arguments: --bogus"),
    (["nightly", "--run-date", "2026-13-01"], "argument --run-date: expected a date as YYYY-MM-DD"),
    (["backfill", "--from", "2026-11-02"], "the following arguments are required: --to"),
    (["nightly", "--from-step", "scoring"], "argument --from-step: invalid choice: 'scoring'"),
    (["train", "--env", "staging"], "invalid choice: 'staging'"),
    (["generate", "--profiles", "0"], "expected a number >= 1"),
    (["changes", "--since-version", "-1"], "--since-version: expected a number >= 0"),
    (["export"], "the following arguments are required: --out"),
    (["explode"], "invalid choice: 'explode'"),
    (["train", "--model", "ltv"],
     "--model 'ltv' is not a model; known: convert_propensity, churn_propensity, lifetime_value"),
    (["score", "--model", "churn_propensity"], "unrecognized arguments: --model"),
    (["train", "--set", "models.lifetime_value.counting_models=[bgnbd, pareto]"],
     "models.lifetime_value.counting_models: unknown 'pareto'; known: bgnbd, mbgnbd, pareto_nbd"),
])
def test_a_bad_option_exits_2_with_one_line(argv, fragment):
    done = subprocess.run([ENRICH, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = _error_lines(done.stderr)
    assert len(lines) == 1 and fragment in lines[0], lines


def test_a_bad_set_value_exits_2_naming_the_option():
    done = subprocess.run([ENRICH, "features", "--set", "novalue"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert _error_lines(done.stderr) == ["enrich features: error: --set expects dotted.key=value, got 'novalue'"]


def test_no_landing_folder_at_all_exits_2_with_one_error_line(spark, tmp_path, capsys):
    code = main(["ingest", "--run-date", "2026-06-01", "--set", f"lakehouse.root={tmp_path}"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2
    assert errors == [f"enrich ingest: error: no landing folder: neither {tmp_path}/landing/events nor "
                      f"{tmp_path}/landing/profiles exists (lakehouse.landing sets them)"]
    assert "Traceback" not in err


def _spark_submit(tmp_path, *submit_args):
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.run([SPARK_SUBMIT, "--master", "local[1]", *submit_args,
                           str(PROJECT_ROOT / "jobs" / "ingest.py"),
                           "--run-date", "2026-06-01", "--set", f"lakehouse.root={tmp_path}"],
                          capture_output=True, text=True, timeout=300, env=env)


def test_spark_submit_job_takes_the_same_options_and_exit_codes(tmp_path):
    jars = ",".join(sorted(str(p) for p in (PROJECT_ROOT / ".cache" / "jars").glob("*.jar")))
    done = _spark_submit(tmp_path, "--jars", jars)
    assert done.returncode == 2, done.stderr[-2000:]
    # spark-submit merges the Python process's stderr into its own stdout.
    assert f"enrich ingest: error: no landing folder: neither {tmp_path}/landing/events nor" in done.stdout


def test_spark_submit_without_the_delta_jars_says_how_to_pass_them(tmp_path):
    done = _spark_submit(tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "enrich ingest: error: Delta Lake jars are not on Spark's classpath" in done.stdout


def _event(event_id, **body):
    record = {"_id": event_id, "timestamp": "2026-05-30T10:00:00.000Z", "eventType": "commerce.purchases",
              "identityMap": {"CRMID": [{"id": f"c-{event_id}", "primary": True}]},
              "commerce": {"purchases": {"value": 1}, "order": {"priceTotal": 10.0, "currencyCode": "USD"}}}
    record.update(body)
    return json.dumps(record)


def _landing(root: Path, lines: list[str]) -> None:
    for kind in ("events", "profiles"):
        (root / "landing" / kind).mkdir(parents=True)
    (root / "landing" / "events" / "part-0.json").write_text("\n".join(lines) + "\n")


def test_an_error_level_expectation_blocks_the_nightly_with_exit_3(spark, tmp_path, capsys):
    root = tmp_path / "lake"
    _landing(root, [
        _event("ok"),
        _event("refund", commerce={"order": {"priceTotal": -5.0, "currencyCode": "USD"}}),
        _event("odd", eventType="commerce.teleport"),
    ])
    code = main(["nightly", "--run-date", "2026-06-01", "--set", f"lakehouse.root={root}"])
    err = capsys.readouterr().err
    assert code == 3
    blocked = [line for line in err.splitlines() if "blocked:" in line]
    assert len(blocked) == 1
    assert "bronze_events.order_total_not_negative" in blocked[0] and "-5.0" in blocked[0]
    assert "bronze_events.event_type_known" in blocked[0] and "commerce.teleport" in blocked[0]
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    assert not lakehouse.exists(spark, cfg.table("features"))
    steps = {r["step"]: r["status"] for r in lakehouse.read(spark, cfg.table("runs")).collect()}
    assert steps == {"ingest": "succeeded", "validate": "failed"}
    failed = lakehouse.read(spark, cfg.table("dq_results")).where(~F.col("success"))
    assert failed.count() == 2


def test_a_warning_level_expectation_is_recorded_and_the_step_succeeds(spark, tmp_path):
    root = tmp_path / "lake"
    _landing(root, [_event("ok"), _event("phone", identityMap={"Phone": [{"id": "555", "primary": True}]})])
    args = ["--run-date", "2026-06-01", "--set", f"lakehouse.root={root}"]
    assert main(["ingest", *args]) == 0
    assert main(["validate", *args]) == 0
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    failed = lakehouse.read(spark, cfg.table("dq_results")).where(~F.col("success")).collect()
    assert [(r["check"], r["expectation"], r["severity"]) for r in failed] == [
        ("identity_namespace_known", "expect_column_values_to_be_null(unknown_identity_namespace)", "warning")]
    assert json.loads(failed[0]["samples"]) == ["Phone"]


def test_records_of_a_night_that_never_reached_validation_are_validated_by_the_next(spark, tmp_path, capsys):
    root = tmp_path / "lake"
    _landing(root, [_event("ok"), _event("odd", eventType="commerce.teleport")])
    # The first night crashed after ingest and was never resumed: nothing validated its rows.
    assert main(["ingest", "--run-date", "2026-06-01", "--set", f"lakehouse.root={root}"]) == 0
    (root / "landing" / "events" / "part-1.json").write_text(_event("next") + "\n")
    assert main(["ingest", "--run-date", "2026-06-02", "--set", f"lakehouse.root={root}"]) == 0
    assert main(["validate", "--run-date", "2026-06-02", "--set", f"lakehouse.root={root}"]) == 3
    blocked = [line for line in capsys.readouterr().err.splitlines() if "blocked:" in line]
    assert len(blocked) == 1 and "commerce.teleport" in blocked[0]
    # Once validated (here, blocked), those rows are not validated again by the nights after.
    (root / "landing" / "events" / "part-2.json").write_text(_event("later") + "\n")
    assert main(["ingest", "--run-date", "2026-06-03", "--set", f"lakehouse.root={root}"]) == 0
    assert main(["validate", "--run-date", "2026-06-03", "--set", f"lakehouse.root={root}"]) == 0
