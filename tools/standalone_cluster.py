"""The nightly on a real Spark standalone cluster on loopback: `make cluster-demo`.

A master and one worker start from the installed Spark distribution (`spark-class
...deploy.master.Master` / `...deploy.worker.Worker`); the nightly job goes to them with
`spark-submit --master spark://127.0.0.1:<port>`, the package as a wheel (--py-files) and
the Delta and XDM jars by --jars, exactly as on a production cluster. With
`--kill-executors`, the executor is killed as each step starts: the worker starts a new
one, Spark reruns the lost tasks, and the night must still finish.

    python -m tools.standalone_cluster --root lakehouse-cluster --profiles 1500 --days 240 --kill-executors
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger("enrich")

PROJECT = Path(__file__).resolve().parents[1]
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
STEP_LINE = re.compile(r"^== (\w+) \((\d+)/(\d+)\) run date")
# Spark's own INFO lines, printed by spark-submit before the job sets its log level.
SPARK_INFO_LINE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d INFO ")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spark_bin(name: str) -> str:
    """bin/<name> of the Spark that pyspark installed beside this interpreter."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    import pyspark
    return str(Path(pyspark.__file__).parent / "bin" / name)


@dataclass
class StandaloneCluster:
    """`with StandaloneCluster(work_dir) as cluster:` a master and one worker on 127.0.0.1.
    Their processes (and the executors they start) are stopped on exit."""
    work_dir: Path
    cores: int = 2
    memory: str = "4g"
    port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    _processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def __enter__(self) -> "StandaloneCluster":
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                        "--port", str(self.port), "--webui-port", str(self.ui_port))
            self._wait_for(lambda state: True, "the master to answer")
            self._start("worker", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                        "--port", str(self.worker_port), "--cores", str(self.cores), "--memory", self.memory,
                        "--webui-port", str(free_port()), "--work-dir", str(self.work_dir / "worker"), self.url)
            self._wait_for(lambda state: state.get("aliveworkers", 0) >= 1, "the worker to register")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, name: str, main_class: str, *args: str) -> None:
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
        out = open(self.work_dir / f"{name}.log", "w")   # noqa: SIM115 - the process owns it until stop
        # Own process group: stop() takes the worker's executors down with it.
        self._processes.append(subprocess.Popen([_spark_bin("spark-class"), main_class, *args], stdout=out,
                                                stderr=subprocess.STDOUT, env=env, start_new_session=True))

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as answer:
            return json.load(answer)

    def _wait_for(self, ready, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self._processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a standalone process exited ({process.returncode}) while waiting for "
                                       f"{what}; see {self.work_dir}/*.log")
            try:
                if ready(self.state()):
                    return
            except OSError:
                pass   # not listening yet
            time.sleep(1.0)
        raise RuntimeError(f"timed out waiting for {what}; see {self.work_dir}/*.log")

    def executors_started(self) -> int:
        """Executors the worker has launched so far (one folder each under its work dir)."""
        return len(glob.glob(str(self.work_dir / "worker" / "app-*" / "*")))

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._processes.clear()


def kill_executors(cluster: StandaloneCluster) -> int:
    """SIGKILL the executor JVMs that `cluster`'s worker started (no other Spark's); how many."""
    pattern = f"{EXECUTOR_CLASS}.*Worker@127.0.0.1:{cluster.worker_port}"
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    for pid in found:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue   # it exited between the listing and the kill: nothing left to kill
    return len(found)


def submit_command(cluster: StandaloneCluster, job_args: Sequence[str], dist_dir: Path) -> list[str]:
    """spark-submit of jobs/nightly.py: the package (wheel or zip) by --py-files, the jars by --jars."""
    wheels = sorted(dist_dir.glob("*.whl")) or sorted(dist_dir.glob("*.zip"))
    jars = sorted(glob.glob(str(PROJECT / ".cache" / "jars" / "delta-*.jar"))) + [str(dist_dir / "enrich-xdm.jar")]
    if not wheels or not Path(jars[-1]).exists():
        raise FileNotFoundError(f"no package or XDM jar in {dist_dir}: run `make dist` first")
    return [_spark_bin("spark-submit"), "--master", cluster.url, "--deploy-mode", "client",
            "--driver-memory", "2g", "--executor-memory", "2g",
            "--conf", f"spark.pyspark.python={sys.executable}",
            "--py-files", str(wheels[-1]), "--jars", ",".join(jars),
            str(PROJECT / "jobs" / "nightly.py"), "--env", "cluster", *job_args]


@dataclass
class ClusterRun:
    exit_code: int
    seconds: float
    steps_started: list[str]
    executors_started: int
    output: str


class ExecutorKiller:
    """A step callback for `run_nightly`: SIGKILL the executor `delay` seconds after each
    step starts, if that step is still running; with `on_attempt`, only the time a step starts
    for that many times, across submissions. `killed_in` lists where it struck."""

    def __init__(self, cluster: StandaloneCluster, delay: float = 3.0, on_attempt: int | None = None):
        self.cluster, self.delay, self.on_attempt = cluster, delay, on_attempt
        self.killed_in: list[str] = []
        self._attempts: dict[str, int] = {}

    def __call__(self, step: str, driver: subprocess.Popen, current: Callable[[], str]) -> None:
        self._attempts[step] = self._attempts.get(step, 0) + 1
        if self.on_attempt is not None and self._attempts[step] != self.on_attempt:
            return

        def strike() -> None:
            time.sleep(self.delay)
            if current() == step and driver.poll() is None and kill_executors(self.cluster):
                self.killed_in.append(step)
                log.info("   [cluster] killed the executor during %s", step)
        threading.Thread(target=strike, daemon=True).start()


StepCallback = Callable[[str, subprocess.Popen, Callable[[], str]], None]


def run_nightly(cluster: StandaloneCluster, job_args: Sequence[str], dist_dir: Path,
                on_step: Sequence[StepCallback] = (), echo: bool = True) -> ClusterRun:
    """Submit the nightly and wait for it. Each callback in `on_step` is called as a step
    starts, with the step, the driver process (its own process group) and a function that
    tells the step running now."""
    began = time.monotonic()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    driver = subprocess.Popen(submit_command(cluster, job_args, dist_dir), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    steps: list[str] = []
    lines: list[str] = []
    for line in driver.stdout:
        lines.append(line)
        if echo and not SPARK_INFO_LINE.match(line):
            sys.stderr.write(line)
        found = STEP_LINE.match(line.strip())
        if found:
            steps.append(found.group(1))
            for callback in on_step:
                callback(found.group(1), driver, lambda: steps[-1])
    code = driver.wait()
    return ClusterRun(code, time.monotonic() - began, steps, cluster.executors_started(), "".join(lines))


def _check(root: Path, run_date: date) -> tuple[int, list[str]]:
    """(profiles in the profile table, steps the ledger shows succeeded for the date), read
    with a local session after the cluster is gone."""
    from pipelines.core.config import load_config
    from pipelines.core.session import build_session

    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    spark = build_session(cfg)
    spark.sparkContext.setLogLevel("ERROR")
    profiles = spark.read.format("delta").load(cfg.table("profile_enrichment")).count()
    steps = [r["step"] for r in spark.read.format("delta").load(cfg.table("runs"))
             .where(f"run_date = '{run_date}' AND status = 'succeeded'").select("step").distinct().collect()]
    return profiles, steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="lakehouse-cluster", help="the demo's lakehouse (replaced)")
    parser.add_argument("--profiles", type=int, default=1500)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--run-date", type=date.fromisoformat, default=date(2026, 6, 1))
    parser.add_argument("--dist", default=str(PROJECT / "dist"), help="folder with the wheel and the XDM jar")
    parser.add_argument("--kill-executors", action="store_true", help="kill the executor as each step starts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    root = Path(args.root).resolve()
    if root.exists():
        import shutil
        shutil.rmtree(root)
    from pipelines.cli import main as enrich

    common = ["--run-date", args.run_date.isoformat(), "--set", f"lakehouse.root={root}"]
    if enrich(["generate", "--profiles", str(args.profiles), "--days", str(args.days), *common]) != 0:
        return 1
    with StandaloneCluster(root.parent / f"{root.name}-spark") as cluster:
        log.info("standalone master %s with one worker (%d cores); web UI http://127.0.0.1:%d",
                 cluster.url, cluster.cores, cluster.ui_port)
        # Few, small shuffles on a demo lakehouse (a real cluster keeps conf/cluster.yaml's 200),
        # and about 150 buyers per training snapshot instead of the 500 a real run requires.
        small = ["--set", "spark.conf.spark.sql.shuffle.partitions=8",
                 "--set", "quality.sufficiency.min_labels_per_class=20"]
        killer = ExecutorKiller(cluster)
        run = run_nightly(cluster, [*common, *small],
                          Path(args.dist), on_step=[killer] if args.kill_executors else [])
    if run.exit_code != 0:
        print(f"cluster demo: the nightly exited {run.exit_code} after {run.seconds:.0f}s")
        return run.exit_code
    profiles, steps = _check(root, args.run_date)
    print(f"cluster demo: nightly on {cluster.url} finished in {run.seconds:.0f}s; {len(steps)} steps succeeded; "
          f"{profiles} profiles in the profile table; executors started {run.executors_started}"
          + (f", one killed during each of {', '.join(killer.killed_in)}" if args.kill_executors else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
