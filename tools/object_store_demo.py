"""The nightly with its lakehouse on S3 and a shared MLflow server: `make object-store-demo`.

On 127.0.0.1 it starts an S3-compatible server (moto) and `mlflow server` (SQLite, its
artifacts on the same S3 server); generates the demo's data and lands it in
`s3a://lakehouse/demo/landing/`; runs the nightly there; starts two nightlies of the next
date at once from two processes (one must be refused with exit code 2, naming the holder);
reads the profile table's change feed with delta-rs; stops what it started and prints one
line per check. The settings it uses are written to `<work>/object-store.yaml`: the same
keys, with a real bucket's endpoint and credentials, run the nightly on AWS.

    python -m tools.object_store_demo --profiles 10000 --run-date 2026-11-29
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Sequence

import boto3
import yaml

from tools.local_servers import MlflowServer, S3Server, s3a_settings

PROJECT = Path(__file__).resolve().parents[1]
BUCKET, ARTIFACTS = "lakehouse", "mlflow-artifacts"
ROOT = f"s3a://{BUCKET}/demo"


def settings_file(folder: Path, s3: S3Server, tracking: MlflowServer) -> Path:
    """The configuration overlay a team would keep for its bucket (here the local server's)."""
    overlay = {
        "lakehouse": {"root": ROOT},
        "mlflow": {"tracking_uri": tracking.uri},
        "spark": {"conf": {f"spark.hadoop.{key}": value for key, value in s3a_settings(s3.endpoint).items()}},
    }
    path = folder / "object-store.yaml"
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    return path


def enrich(*argv: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "enrich"), *argv], env=env, cwd=PROJECT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def land(s3_client, local_root: Path) -> int:
    """Upload the generated landing folder under the demo's root; the number of files."""
    files = [path for path in local_root.rglob("*") if path.is_file()]
    for path in files:
        s3_client.upload_file(str(path), BUCKET, f"demo/{path.relative_to(local_root).as_posix()}")
    return len(files)


def change_feed_rows(s3: S3Server) -> tuple[int, int, dict[str, int]]:
    """The profile table read by delta-rs: its rows, latest version and change rows by type."""
    import pyarrow as pa
    from deltalake import DeltaTable

    options = {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": s3.environment_for_clients["AWS_ACCESS_KEY_ID"],
               "AWS_SECRET_ACCESS_KEY": s3.environment_for_clients["AWS_SECRET_ACCESS_KEY"]}
    table = DeltaTable(f"s3://{BUCKET}/demo/gold/profile_enrichment", storage_options=options)
    feed = pa.table(table.load_cdf(starting_version=0).read_all())
    kinds: dict[str, int] = {}
    for kind in feed.column("_change_type").to_pylist():
        kinds[kind] = kinds.get(kind, 0) + 1
    return table.to_pyarrow_table(columns=["person_id"]).num_rows, table.version(), kinds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="object-store-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(PROJECT / ".cache" / "object-store-demo"),
                        help="folder for the servers' data and logs (replaced)")
    parser.add_argument("--profiles", type=int, default=10000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--run-date", type=date.fromisoformat, default=date.today())
    args = parser.parse_args(argv)

    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    checks: list[tuple[str, bool, str]] = []
    with S3Server(work / "s3") as s3:
        env = {**os.environ, **s3.environment_for_clients}
        client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1",
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        for bucket in (BUCKET, ARTIFACTS):
            client.create_bucket(Bucket=bucket)
        with MlflowServer(work / "mlflow", s3, f"s3://{ARTIFACTS}/") as tracking:
            print(f"S3 server {s3.endpoint}, MLflow server {tracking.uri}; logs in {work}", flush=True)
            overlay = settings_file(work, s3, tracking)
            local = work / "generated"
            generated = enrich("generate", "--run-date", args.run_date.isoformat(), "--profiles", str(args.profiles),
                               "--days", str(args.days), "--set", f"lakehouse.root={local}", env=env)
            out, _ = generated.communicate()
            if generated.returncode != 0:
                print(out)
                return generated.returncode
            print(f"landed {land(client, local)} files in {ROOT}/landing", flush=True)

            started = time.monotonic()
            night = enrich("nightly", "--run-date", args.run_date.isoformat(), "--conf", str(overlay), env=env)
            for line in night.stdout:
                print(f"  {line}", end="", flush=True)
            night.wait()
            checks.append(("nightly on S3 with the MLflow server", night.returncode == 0,
                           f"exit {night.returncode} in {time.monotonic() - started:.0f} s"))

            next_date = (args.run_date + timedelta(days=1)).isoformat()
            racers = [enrich("nightly", "--run-date", next_date, "--conf", str(overlay), env=env) for _ in range(2)]
            outcomes = [(racer.communicate()[0], racer.returncode) for racer in racers]
            refused = [out for out, code in outcomes if code == 2 and "another run" in out]
            held = [code for _, code in outcomes if code == 0]
            checks.append(("two nightlies at once: one runs, one is refused with exit 2",
                           len(refused) == 1 and len(held) == 1,
                           (next(line for line in refused[0].splitlines() if "another run" in line).strip()[:200]
                            if refused else f"exit codes {[code for _, code in outcomes]}")))
            for index, (out, _) in enumerate(outcomes):
                (work / f"racer{index}.log").write_text(out)

            rows, version, kinds = change_feed_rows(s3)
            checks.append(("the profile table's change feed read with delta-rs", rows > 0 and bool(kinds),
                           f"{rows} profiles at version {version}; change rows "
                           + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))))
            artifacts = client.list_objects_v2(Bucket=ARTIFACTS).get("KeyCount", 0)
            checks.append(("model artifacts on S3 through the MLflow server", artifacts > 0,
                           f"{artifacts} objects in s3://{ARTIFACTS}"))
    print("servers stopped")
    for name, passed, detail in checks:
        print(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")
    return 0 if all(passed for _, passed, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
