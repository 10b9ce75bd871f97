"""A real S3-compatible server and a real MLflow tracking server on 127.0.0.1, for the
lakehouse as teams keep it: on object storage, with a tracking server the team shares.

moto's standalone server speaks S3 over HTTP; Spark reaches it through Hadoop's S3A
connector (the jars `make setup` fetches), the lock and MLflow's server through boto3.
"""

from __future__ import annotations

import os
import uuid

import boto3
import pytest

from tools.local_servers import MlflowServer, S3Server, s3a_settings


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        saved = {key: os.environ.get(key) for key in server.environment_for_clients}
        os.environ.update(server.environment_for_clients)
        try:
            yield server
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="session")
def s3_spark(spark, s3_server):
    """The suite's SparkSession, its S3A connector pointed at the local server."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3a_settings(s3_server.endpoint).items():
        hadoop.set(key, value)
    return spark


@pytest.fixture
def bucket(s3_server) -> str:
    """A new, empty bucket for one test."""
    name = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server.endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def mlflow_server(s3_server, tmp_path_factory):
    """`mlflow server` with its database in SQLite and its artifacts on the S3 server."""
    artifacts = "mlflow-artifacts"
    boto3.client("s3", endpoint_url=s3_server.endpoint).create_bucket(Bucket=artifacts)
    with MlflowServer(tmp_path_factory.mktemp("mlflow"), s3_server, f"s3://{artifacts}/") as server:
        yield server
