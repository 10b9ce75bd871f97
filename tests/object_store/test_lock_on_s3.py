"""The nightly lock on S3: created by a conditional put, so of processes racing for a free
or a stale lock exactly one holds it; a live holder is never taken, whatever its age; an
empty lock is held."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from pipelines.core.config import load_config
from pipelines.core.errors import BadInputError
from pipelines.ops.lock import FOLDER, NightlyLock
from tests.lock_races import holder, run_racers


def _config(root: str):
    return load_config("local", overrides=[f"lakehouse.root={root}", "mlflow.tracking_uri=sqlite:///unused.db"])


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Lake:
    def __init__(self, endpoint: str, bucket: str):
        self.s3, self.bucket, self.root = boto3.client("s3", endpoint_url=endpoint), bucket, f"s3a://{bucket}/lake"

    def leave(self, number: int, text: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"lake/{FOLDER}/{number:012d}.json", Body=text.encode())

    def generations(self) -> dict[int, dict]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"lake/{FOLDER}/").get("Contents", [])
        found = {}
        for item in listed:
            text = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read().decode()
            found[int(item["Key"].rsplit("/", 1)[1][:-5])] = json.loads(text) if text else {}
        return found


@pytest.fixture
def lake(s3_server, bucket) -> Lake:
    return Lake(s3_server.endpoint, bucket)


def _state(heartbeat: datetime, since: datetime, token: str = "other") -> str:
    return json.dumps({"command": "nightly", "run_date": "2026-06-02", "token": token, "host": "elsewhere",
                       "pid": "4242", "since": since.isoformat(timespec="seconds"),
                       "heartbeat": heartbeat.isoformat(timespec="seconds")})


def _run_racers(root: str) -> list[tuple[str, str]]:
    return run_racers([f"lakehouse.root={root}", "mlflow.tracking_uri=sqlite:///unused.db"])


def test_of_processes_racing_for_a_free_lock_on_s3_exactly_one_holds_it(lake):
    outcomes = _run_racers(lake.root)
    winners = [token for token, outcome in outcomes if outcome == "held"]
    assert len(winners) == 1, outcomes
    assert all("another run" in outcome for _, outcome in outcomes if outcome != "held"), outcomes
    assert lake.generations()[1]["token"] == winners[0] and lake.generations()[1]["released"] is True


def test_of_processes_racing_to_take_over_a_stale_lock_on_s3_exactly_one_holds_it(lake):
    lake.leave(5, _state(heartbeat=_now() - timedelta(hours=1), since=_now() - timedelta(hours=2)))
    outcomes = _run_racers(lake.root)
    winners = [token for token, outcome in outcomes if outcome == "held"]
    assert len(winners) == 1, outcomes
    assert lake.generations()[6]["token"] == winners[0]


# Made when the test runs, not at collection, or the heartbeat would be as old as the tiers before.
@pytest.mark.parametrize("held", [
    lambda: _state(heartbeat=_now(), since=_now() - timedelta(days=2)),   # running for two days, heartbeat fresh
    lambda: "",                                                           # being written just now
], ids=["running for days", "empty"])
def test_a_live_lock_on_s3_is_held_whatever_its_age_and_an_empty_one_too(lake, held):
    held = held()
    lake.leave(3, held)
    with pytest.raises(BadInputError, match="another run holds s3a://"):
        with NightlyLock(None, _config(lake.root), holder("new")):
            pass
    assert list(lake.generations()) == [3]


def test_a_run_takes_and_releases_the_lock_through_the_sessions_s3a_settings(s3_spark, lake, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")   # only the session's fs.s3a.endpoint leads to the server
    with NightlyLock(s3_spark, _config(lake.root), holder("with-session")):
        assert lake.generations()[1]["token"] == "with-session"
    assert lake.generations()[1]["released"] is True
