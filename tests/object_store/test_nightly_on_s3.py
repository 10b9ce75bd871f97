"""The nightly with its lakehouse on S3 and its models on a shared MLflow server, as teams
run it: every table, the report, the Data Docs and the lock under `s3a://bucket/lake`; runs,
registry and artifacts through `mlflow server`, whose artifacts are on the same S3 server.
Then the commands people run afterwards (models, show, changes, export, forget, vacuum),
and another Delta engine reading what the night wrote."""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from mlflow import MlflowClient

from pipelines.cli import main
from pipelines.core import lakehouse
from pipelines.core.config import Config, load_config
from tests.conftest import SMALL_NIGHT, SMALL_NIGHT_DATE
from tests.engines import change_feeds_read_by_both, rows_read_by_both


@dataclass
class NightOnS3:
    bucket: str
    root: str
    cfg: Config
    args: list[str]
    exit_code: int
    stdout: str
    workdir: Path
    s3: object


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def night(s3_spark, s3_server, mlflow_server, tmp_path_factory) -> NightOnS3:
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint)
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    local = tmp_path_factory.mktemp("landing") / "lakehouse"
    confs = [arg for path in SMALL_NIGHT for arg in ("--conf", path)]
    assert main(["generate", "--run-date", SMALL_NIGHT_DATE.isoformat(), "--profiles", "500", "--days", "240",
                 "--seed", "11", "--set", f"lakehouse.root={local}", "--set", "generate.files=2", *confs]) == 0
    for path in local.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"lake/{path.relative_to(local).as_posix()}")
    root = f"s3a://{bucket}/lake"
    args = ["--run-date", SMALL_NIGHT_DATE.isoformat(), "--set", f"lakehouse.root={root}",
            "--set", f"mlflow.tracking_uri={mlflow_server.uri}", "--set", f"mlflow.experiment=night-{bucket}", *confs]
    # Where a local file call on an s3a:// path would leave a folder named `s3a:`.
    workdir = tmp_path_factory.mktemp("workdir")
    before = os.getcwd()
    os.chdir(workdir)
    try:
        code, printed = _run("nightly", *args)
    finally:
        os.chdir(before)
    cfg = load_config("local", SMALL_NIGHT, overrides=[f"lakehouse.root={root}",
                                                       f"mlflow.tracking_uri={mlflow_server.uri}"])
    return NightOnS3(bucket, root, cfg, args, code, printed, workdir, s3)


def _keys(night: NightOnS3, prefix: str, bucket: str | None = None) -> list[str]:
    pages = night.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket or night.bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_the_nightly_runs_with_every_table_report_and_data_doc_on_s3(s3_spark, night):
    assert night.exit_code == 0, night.stdout
    profiles = lakehouse.read(s3_spark, night.cfg.table("profile_enrichment"))
    events = lakehouse.read(s3_spark, night.cfg.table("silver_events"))
    assert profiles.count() == profiles.select("person_id").distinct().count() > 0
    assert profiles.join(events, "person_id", "left_anti").count() == 0
    assert profiles.where("convert_probability IS NOT NULL AND ltv_expected_value IS NOT NULL").count() > 0
    report = f"lake/reports/{SMALL_NIGHT_DATE.isoformat()}/index.html"
    page = night.s3.get_object(Bucket=night.bucket, Key=report)["Body"].read().decode()
    assert "<h2>Models</h2>" in page and "data:image/png;base64" in page
    assert f"report: s3a://{night.bucket}/{report}" in night.stdout
    assert "lake/reports/data_docs/index.html" in _keys(night, "lake/reports/data_docs/")
    assert any(key.endswith(".json") for key in _keys(night, "lake/reports/gx_validation_results/"))
    assert f"Data Docs: s3a://{night.bucket}/lake/reports/data_docs/index.html" in night.stdout
    released = [json.loads(night.s3.get_object(Bucket=night.bucket, Key=key)["Body"].read())
                for key in _keys(night, "lake/ops/nightly_lock/")]
    assert released and all(state["released"] for state in released)
    assert list(night.workdir.iterdir()) == []


def test_models_are_registered_and_their_artifacts_kept_through_the_mlflow_server(night):
    assert night.exit_code == 0
    client = MlflowClient(tracking_uri=night.cfg.mlflow_tracking_uri())
    for name in ("convert_propensity", "churn_propensity", "lifetime_value"):
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.source and client.get_run(champion.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    assert any(key.endswith("MLmodel") for key in _keys(night, "", bucket="mlflow-artifacts"))
    code, printed = _run("models", "--json", *night.args[2:])
    assert code == 0
    listed = {model["registered_name"]: model for model in json.loads(printed)}
    assert listed["convert_propensity"]["champion"] is not None


GOLD_TABLES = ("features", "training_sets", "scores", "predictions", "lifetime_value", "affinity",
               "product_affinity", "content_affinity", "segments", "profile_enrichment")


def test_delta_rs_reads_every_gold_table_and_the_change_feed_on_s3_as_spark_does(s3_spark, s3_server, night):
    from deltalake import DeltaTable

    assert night.exit_code == 0
    options = {"AWS_ENDPOINT_URL": s3_server.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
               "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"]}

    def delta_rs(path: str) -> DeltaTable:
        return DeltaTable(path.replace("s3a://", "s3://", 1), storage_options=options)

    for name in GOLD_TABLES:
        path = night.cfg.table(name)
        ours, theirs = rows_read_by_both(s3_spark, path, delta_rs(path))
        assert theirs == ours and len(ours) > 0, name
    path = night.cfg.table("profile_enrichment")
    ours, theirs = change_feeds_read_by_both(s3_spark, path, delta_rs(path),
                                             ("person_id", "convert_probability", "product_affinity_top_skus"))
    assert theirs == ours and len(ours) > 0


# Last: it deletes a person and vacuums the tables the tests above read.
def test_show_changes_export_forget_and_vacuum_work_on_s3(s3_spark, night):
    assert night.exit_code == 0
    common = night.args[2:]
    person = lakehouse.read(s3_spark, night.cfg.table("profile_enrichment")).first()
    identity = f"{person['primary_identity_namespace']}:{person['primary_identity_id']}"
    code, printed = _run("show", "--identity", identity, "--json", *common)
    assert code == 0 and json.loads(printed)["person_id"] == person["person_id"]
    code, printed = _run("changes", "--since-version", "0", "--out", f"s3a://{night.bucket}/changes", *common)
    assert code == 0 and _keys(night, "changes/")
    code, printed = _run("export", "--out", f"s3a://{night.bucket}/export", *common)
    assert code == 0 and "export/schema.json" in _keys(night, "export/")
    code, printed = _run("forget", "--identity", identity, *common)
    assert code == 0
    assert lakehouse.read(s3_spark, night.cfg.table("profile_enrichment")).where(
        f"person_id = '{person['person_id']}'").count() == 0
    code, printed = _run("vacuum", *common)
    assert code == 0
