"""The nightly lock: one writer per lakehouse, taken atomically, held by a heartbeat, taken
over only when stale, and raced for by real processes."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipelines.core.config import load_config
from pipelines.core.errors import BadInputError
from pipelines.ops.lock import FOLDER, NightlyLock
from tests.lock_races import holder, run_racers


def _config(root: Path, stale_minutes: float = 10, beat_seconds: float = 30):
    return load_config("local", overrides=[f"lakehouse.root={root}",
                                           f"orchestration.lock_stale_after_minutes={stale_minutes}",
                                           f"orchestration.lock_heartbeat_seconds={beat_seconds}"])


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _generations(root: Path) -> dict[int, dict]:
    """Each generation's state; a file that is not a JSON object reads as {"text": ...}."""
    states = {}
    for path in sorted((root / FOLDER).glob("*.json")):
        text = path.read_text()
        try:
            states[int(path.stem)] = json.loads(text)
        except json.JSONDecodeError:
            states[int(path.stem)] = {"text": text}
    return states


def _leave(root: Path, number: int, text: str, modified: datetime | None = None) -> Path:
    path = root / FOLDER / f"{number:012d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if modified is not None:
        stamp = modified.replace(tzinfo=timezone.utc).timestamp()
        os.utime(path, (stamp, stamp))
    return path


def _state(host: str, pid: int, heartbeat: datetime, since: datetime | None = None, token: str = "other") -> str:
    return json.dumps({"command": "nightly", "run_date": "2026-06-02", "token": token, "host": host, "pid": str(pid),
                       "since": (since or heartbeat).isoformat(timespec="seconds"),
                       "heartbeat": heartbeat.isoformat(timespec="seconds")})


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "lake"


def test_a_second_run_is_refused_while_the_first_holds_the_lock_and_may_run_after(root):
    with NightlyLock(None, _config(root), holder("first")):
        assert _generations(root)[1]["token"] == "first"
        with pytest.raises(BadInputError, match=r"another run holds .*nightly of 2026-11-28 \(pid \d+"):
            with NightlyLock(None, _config(root), holder("second")):
                pass
    assert _generations(root)[1]["released"] is True
    with NightlyLock(None, _config(root), holder("third")):
        assert _generations(root)[2]["token"] == "third"
    assert list(_generations(root)) == [1, 2], "older generations are cleaned up, the latest two kept"


def test_a_failing_run_releases_the_lock(root):
    with pytest.raises(RuntimeError):
        with NightlyLock(None, _config(root), holder("first")):
            raise RuntimeError("step failed")
    assert _generations(root)[1]["released"] is True


def test_the_holder_renews_its_heartbeat(root):
    with NightlyLock(None, _config(root, stale_minutes=0.1, beat_seconds=1), holder("first")):
        first = _generations(root)[1]["heartbeat"]
        time.sleep(2.5)
        assert _generations(root)[1]["heartbeat"] > first


# States are made when the test runs: made at collection, a fresh heartbeat would be as old
# as the tiers that run before the test.
@pytest.mark.parametrize("left_behind", [
    lambda: _state(socket.gethostname(), 999_999_999, _now()),                  # this host, its process gone
    lambda: _state("elsewhere", os.getpid(), _now() - timedelta(minutes=11)),   # no heartbeat for 11 minutes
    lambda: "",                                                                  # empty, and old
], ids=["process gone", "heartbeat old", "empty and old"])
def test_a_lock_left_by_a_crashed_run_is_taken_over(root, left_behind):
    left_behind = left_behind()
    _leave(root, 7, left_behind, modified=_now() - timedelta(minutes=11))
    with NightlyLock(None, _config(root), holder("new")):
        assert _generations(root)[8]["token"] == "new"


@pytest.mark.parametrize("held", [
    lambda: _state("elsewhere", 4242, heartbeat=_now(), since=_now() - timedelta(days=2)),   # running for days
    lambda: "",                                                                               # being written now
    lambda: "{not json",                                                                      # unreadable, recent
], ids=["running for days", "empty", "unreadable"])
def test_a_live_lock_is_held_whatever_its_age_and_an_empty_or_unreadable_one_too(root, held):
    held = held()
    _leave(root, 3, held)
    with pytest.raises(BadInputError, match="another run holds"):
        with NightlyLock(None, _config(root), holder("new")):
            pass
    assert list(_generations(root)) == [3]


def test_a_lock_of_an_earlier_release_is_respected(root):
    (root / "ops").mkdir(parents=True)
    (root / "ops" / "nightly.lock").write_text(json.dumps({"token": "old"}))
    with pytest.raises(BadInputError, match="a lock of an earlier release is at .*nightly.lock"):
        with NightlyLock(None, _config(root), holder("new")):
            pass


def test_the_heartbeat_must_be_well_inside_the_stale_limit(root):
    with pytest.raises(BadInputError, match="lock_heartbeat_seconds must be positive and at most a third"):
        NightlyLock(None, _config(root, stale_minutes=1, beat_seconds=30), holder("x"))


def _run_racers(root: Path) -> list[tuple[str, str]]:
    return run_racers([f"lakehouse.root={root}", "orchestration.lock_stale_after_minutes=10",
                       "orchestration.lock_heartbeat_seconds=30"])


def test_of_processes_racing_for_a_free_lock_exactly_one_holds_it(root):
    outcomes = _run_racers(root)
    assert sorted(o for _, o in outcomes if o == "held") == ["held"]
    assert all("another run" in o for _, o in outcomes if o != "held"), outcomes


def test_of_processes_racing_to_take_over_a_stale_lock_exactly_one_holds_it(root):
    _leave(root, 5, _state("elsewhere", 1, _now() - timedelta(hours=1)))
    outcomes = _run_racers(root)
    winners = [token for token, o in outcomes if o == "held"]
    assert len(winners) == 1, outcomes
    assert _generations(root)[6]["token"] == winners[0]


def test_a_lock_folder_removed_by_hand_while_held_ends_the_run_without_error(root):
    import shutil

    with NightlyLock(None, _config(root), holder("first")):
        shutil.rmtree(root / FOLDER)
    assert not (root / FOLDER).exists() or _generations(root) == {}
