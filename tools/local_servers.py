"""An S3-compatible server and an MLflow tracking server on 127.0.0.1, as the tests and
`make object-store-demo` use them: what a team's object store and shared MLflow are, on
one machine.

    with S3Server(folder) as s3, MlflowServer(folder, s3, "s3://mlflow-artifacts/") as tracking:
        ... lakehouse.root=s3a://bucket/lake, mlflow.tracking_uri=tracking.uri ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# moto accepts any credentials; boto3, MLflow and S3A still want some.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def s3a_settings(endpoint: str) -> dict[str, str]:
    """Hadoop settings that point S3A at a local S3-compatible server (keys without the
    `spark.hadoop.` prefix a Spark configuration gives them)."""
    return {
        "fs.s3a.endpoint": endpoint,
        "fs.s3a.endpoint.region": CREDENTIALS["AWS_DEFAULT_REGION"],
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.access.key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "fs.s3a.secret.key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    }


class _Server:
    """A child process serving HTTP on 127.0.0.1, stopped on leaving the block; its output
    goes to `<folder>/<name>.log`, which a failure to start quotes."""
    name = "server"

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {**os.environ, **CREDENTIALS}

    def ready_path(self) -> str:
        return "/"

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / f"{self.name}.log", "wb")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        env=self.environment(), cwd=self.folder)
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + self.ready_path(), timeout=2):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        self.__exit__()
        tail = (self.folder / f"{self.name}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not start on {self.url}: {tail}")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class S3Server(_Server):
    """moto's standalone server: S3 (with conditional writes) and DynamoDB."""
    name = "s3"

    @property
    def endpoint(self) -> str:
        return self.url

    @property
    def environment_for_clients(self) -> dict[str, str]:
        """What boto3 (and so the nightly lock, without a session) needs to reach this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def ready_path(self) -> str:
        return "/moto-api/"


class MlflowServer(_Server):
    """`mlflow server`: runs and the model registry in SQLite, artifacts proxied to
    `artifacts_destination` on the S3 server."""
    name = "mlflow"

    def __init__(self, folder: Path, s3: S3Server, artifacts_destination: str):
        super().__init__(folder)
        self.s3 = s3
        self.artifacts_destination = artifacts_destination

    @property
    def uri(self) -> str:
        return self.url

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination", self.artifacts_destination]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "MLFLOW_S3_ENDPOINT_URL": self.s3.endpoint}

    def ready_path(self) -> str:
        return "/health"
