"""One writer at a time per lakehouse: a lock that holds across hosts.

The lock is a folder, `<lakehouse>/ops/nightly_lock/`, of numbered generations
(`000000000001.json`, ...); the highest generation is the lock's state. Every change is
the exclusive creation of the next number, which exactly one writer can win:

    take a free lock       the highest generation is released (or there is none): create the next
    take over a stale one  its heartbeat is older than `lock_stale_after_minutes`: create the next
    hold it                rewrite only one's own generation, with a heartbeat every
                           `lock_heartbeat_seconds` (a background thread)
    release it             write "released" into one's own generation

Of two runs that race for a free or a stale lock, both try to create the same number and
one wins; the loser is refused, naming the winner. A generation that is empty or
unreadable (its writer is between creating and writing it) is held, with the file's
modification time as its heartbeat. A holder on this host whose process is gone is stale
at once: a crashed run's restart need not wait for the heartbeat to age.

Exclusive creation is `O_EXCL` on a local disk, a conditional put (`If-None-Match: *`) on
S3 (`s3a://`, `s3://`), and Hadoop's create-without-overwrite elsewhere, which is atomic on
HDFS, ABFS and GCS. S3 is reached with boto3, set up from the session's S3A settings
(`fs.s3a.endpoint`, keys, region; per bucket first) or, without a session, from the
environment (`AWS_ENDPOINT_URL`, the usual credential chain).

    with NightlyLock(spark, cfg, {"command": "nightly", "run_date": "2026-11-29", "token": token}):
        ...
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Mapping

from pyspark.sql import SparkSession

from pipelines.core import lakehouse
from pipelines.core.clock import utc_now
from pipelines.core.config import Config
from pipelines.core.errors import BadInputError

log = logging.getLogger("enrich")

FOLDER = "ops/nightly_lock"
# Where releases before the generations kept a single lock file.
EARLIER_LOCK_FILE = "ops/nightly.lock"


@dataclass(frozen=True)
class Generation:
    """One generation of the lock as read: its holder (empty when the file is empty or
    unreadable), and when its holder last showed it was alive."""
    number: int
    holder: Mapping[str, str]
    heartbeat: datetime | None
    released: bool

    def describe(self) -> str:
        h = self.holder
        if not h:
            return "a run that is starting, or a lock file that cannot be read"
        return (f"{h.get('command', '?')} of {h.get('run_date', '?')} (pid {h.get('pid', '?')} on "
                f"{h.get('host', '?')}, since {h.get('since', '?')} UTC, heartbeat "
                f"{self.heartbeat.isoformat(timespec='seconds') if self.heartbeat else '?'} UTC)")


class NightlyLock:
    """`with NightlyLock(spark, cfg, holder):` — refused with BadInputError (exit code 2)
    naming the holder while another live run holds the lakehouse. `holder` names the run
    (command, run_date) and carries a unique `token`."""

    def __init__(self, spark: SparkSession | None, cfg: Config, holder: Mapping[str, str]):
        root = cfg.root.rstrip("/")
        self._store = _store(spark, f"{root}/{FOLDER}")
        self._earlier = _store(spark, f"{root}/ops")
        self._stale_after = timedelta(minutes=float(cfg.get("orchestration.lock_stale_after_minutes")))
        self._beat_seconds = float(cfg.get("orchestration.lock_heartbeat_seconds"))
        if self._beat_seconds <= 0 or timedelta(seconds=3 * self._beat_seconds) > self._stale_after:
            raise BadInputError("orchestration.lock_heartbeat_seconds must be positive and at most a third of "
                                "lock_stale_after_minutes, so a live holder is never taken for stale")
        self._holder = {**holder, "host": socket.gethostname(), "pid": str(os.getpid()),
                        "since": utc_now().isoformat(timespec="seconds")}
        self._number: int | None = None
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    @property
    def path(self) -> str:
        return self._store.folder

    def __enter__(self) -> "NightlyLock":
        if self._earlier.exists(EARLIER_LOCK_FILE.split("/")[-1]):
            raise BadInputError(f"a lock of an earlier release is at {self._earlier.folder}/nightly.lock: "
                                "wait for that run, or delete the file if it is certainly gone")
        numbers = self._store.numbers()
        if numbers:
            top = self._read(numbers[-1])
            if not top.released:
                if not self._is_stale(top):
                    raise BadInputError(f"another run holds {self.path}: {top.describe()}; wait for it, or delete "
                                        "the folder if that run is certainly gone")
                log.warning("taking over the stale lock %s: %s", self.path, top.describe())
        number = (numbers[-1] + 1) if numbers else 1
        if not self._store.create(_name(number), self._text()):
            raise BadInputError(f"another run took {self.path} first: {self._read(number).describe()}")
        latest = self._store.numbers()[-1]
        if latest != number:
            # A writer that read the folder long ago recreated a cleaned-up number: not the lock.
            self._store.delete(_name(number))
            raise BadInputError(f"another run holds {self.path}: {self._read(latest).describe()}")
        self._number = number
        for old in numbers[:-1]:
            self._store.delete(_name(old))
        self._beating = threading.Thread(target=self._beat, name="nightly-lock-heartbeat", daemon=True)
        self._beating.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        if self._number is None:
            return
        numbers = self._store.numbers()
        if not numbers or numbers[-1] != self._number:
            log.warning("the lock %s was taken over or removed while this run held it", self.path)
            return
        self._store.overwrite(_name(self._number), self._text(released=True))

    def _text(self, released: bool = False) -> str:
        state = {**self._holder, "heartbeat": utc_now().isoformat(timespec="seconds")}
        return json.dumps({**state, "released": True} if released else state, sort_keys=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._beat_seconds):
            try:
                self._store.overwrite(_name(self._number), self._text())
            except Exception as err:   # noqa: BLE001 - a missed beat is retried; the run goes on
                log.warning("lock heartbeat not written (%s); retrying in %ss", err, self._beat_seconds)

    def _read(self, number: int) -> Generation:
        text, modified = self._store.read(_name(number))
        try:
            holder = json.loads(text) if text else {}
        except json.JSONDecodeError:
            holder = {}
        if not isinstance(holder, dict):
            holder = {}
        try:
            heartbeat = datetime.fromisoformat(holder["heartbeat"])
        except (KeyError, TypeError, ValueError):
            heartbeat = modified   # no readable heartbeat: the file's own time stands for it
        return Generation(number, holder, heartbeat, bool(holder.get("released")))

    def _is_stale(self, generation: Generation) -> bool:
        if generation.heartbeat is None or utc_now() - generation.heartbeat > self._stale_after:
            return True
        holder = generation.holder
        if holder and holder.get("host") == socket.gethostname():
            return not _process_alive(int(holder.get("pid") or 0))
        return False


def _name(number: int) -> str:
    return f"{number:012d}.json"


def _numbers(names: list[str]) -> list[int]:
    """The generations among a folder's names, in order."""
    return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())


class _LocalStore:
    def __init__(self, folder: str):
        self.folder = folder.removeprefix("file://").removeprefix("file:")

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def numbers(self) -> list[int]:
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        return _numbers(names)

    def exists(self, name: str) -> bool:
        return os.path.exists(self._path(name))

    def create(self, name: str, text: str) -> bool:
        os.makedirs(self.folder, exist_ok=True)
        try:
            handle = os.open(self._path(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        return True

    def overwrite(self, name: str, text: str) -> None:
        # Written beside and renamed over: a reader sees the old state or the new, never half.
        partial = self._path(f".{name}.{os.getpid()}.partial")
        with open(partial, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(partial, self._path(name))

    def read(self, name: str) -> tuple[str | None, datetime | None]:
        try:
            with open(self._path(name), encoding="utf-8") as handle:
                text = handle.read()
            modified = _utc(os.path.getmtime(self._path(name)))
        except FileNotFoundError:
            return None, None
        return text, modified

    def delete(self, name: str) -> None:
        try:
            os.remove(self._path(name))
        except FileNotFoundError:
            return


class _HadoopStore:
    """The same through Hadoop's file system (HDFS and object stores)."""

    def __init__(self, spark: SparkSession, folder: str):
        self.folder, self._spark = folder, spark
        self._fs, _ = lakehouse.file_system(spark, folder)

    def _path(self, name: str):
        return self._spark.sparkContext._jvm.org.apache.hadoop.fs.Path(f"{self.folder}/{name}")

    def numbers(self) -> list[int]:
        names = lakehouse.folder_entries(self._spark, self.folder) or []
        return _numbers(names)

    def exists(self, name: str) -> bool:
        return bool(self._fs.exists(self._path(name)))

    def create(self, name: str, text: str) -> bool:
        try:
            lakehouse.write_text(self._spark, f"{self.folder}/{name}", text, overwrite=False)
        except Exception:   # noqa: BLE001 - the file now existing means another writer won; else it is raised
            if self.exists(name):
                return False
            raise
        return True

    def overwrite(self, name: str, text: str) -> None:
        lakehouse.write_text(self._spark, f"{self.folder}/{name}", text, overwrite=True)

    def read(self, name: str) -> tuple[str | None, datetime | None]:
        if not self.exists(name):
            return None, None
        status = self._fs.getFileStatus(self._path(name))
        return (lakehouse.read_text(self._spark, f"{self.folder}/{name}"),
                _utc(status.getModificationTime() / 1000))

    def delete(self, name: str) -> None:
        self._fs.delete(self._path(name), False)


class _S3Store:
    """The same on S3, whose conditional put lets exactly one of two writers create a key."""

    def __init__(self, spark: SparkSession | None, folder: str):
        self.folder = folder
        self._bucket, _, prefix = folder.split("://", 1)[1].partition("/")
        self._prefix = prefix.strip("/") + "/"
        self._s3 = _s3_client(spark, self._bucket)

    def numbers(self) -> list[int]:
        names = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._prefix,
                                                                       Delimiter="/"):
            names += [item["Key"][len(self._prefix):] for item in page.get("Contents", [])]
        return _numbers(names)

    def exists(self, name: str) -> bool:
        return self.read(name)[0] is not None

    def create(self, name: str, text: str) -> bool:
        try:
            self._s3.put_object(Bucket=self._bucket, Key=self._prefix + name, Body=text.encode("utf-8"),
                                IfNoneMatch="*")
        except self._s3.exceptions.ClientError as err:
            # 412: the key exists; 409: another conditional put of it is in flight.
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return False
            raise
        return True

    def overwrite(self, name: str, text: str) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=self._prefix + name, Body=text.encode("utf-8"))

    def read(self, name: str) -> tuple[str | None, datetime | None]:
        try:
            found = self._s3.get_object(Bucket=self._bucket, Key=self._prefix + name)
        except self._s3.exceptions.NoSuchKey:
            return None, None
        return found["Body"].read().decode("utf-8", errors="replace"), _utc(found["LastModified"].timestamp())

    def delete(self, name: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=self._prefix + name)


def _s3_client(spark: SparkSession | None, bucket: str):
    """boto3's S3 client for `bucket`, with the session's S3A settings where it has them."""
    import boto3
    from botocore.config import Config as BotoConfig

    conf = spark.sparkContext._jsc.hadoopConfiguration() if spark is not None else None

    def setting(key: str) -> str | None:
        if conf is None:
            return None
        return conf.get(f"fs.s3a.bucket.{bucket}.{key}") or conf.get(f"fs.s3a.{key}")

    endpoint = setting("endpoint")
    if endpoint and "://" not in endpoint:
        endpoint = ("http://" if setting("connection.ssl.enabled") == "false" else "https://") + endpoint
    options = {"endpoint_url": endpoint, "region_name": setting("endpoint.region"),
               "aws_access_key_id": setting("access.key"), "aws_secret_access_key": setting("secret.key"),
               "aws_session_token": setting("session.token")}
    path_style = setting("path.style.access") == "true"
    return boto3.client("s3", **{k: v for k, v in options.items() if v},
                        config=BotoConfig(s3={"addressing_style": "path"}) if path_style else None)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def _store(spark: SparkSession | None, folder: str):
    if "://" not in folder or folder.startswith("file:"):
        return _LocalStore(folder)
    if folder.startswith(("s3a://", "s3://")):
        return _S3Store(spark, folder)
    return _HadoopStore(spark, folder)


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
