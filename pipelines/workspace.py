"""The notebook workspace: a Spark session on the lakehouse, tables by name, and the
pipeline's own commands, for exploring the XDM data and authoring custom models.

    from pipelines.workspace import open_workspace
    ws = open_workspace()                    # conf as `enrich` reads it, plus the variables below
    events = ws.table("silver_events")       # any key of lakehouse.tables
    ws.save_model("outdoor_buyer", {...})    # a custom model definition, as <models.custom_dir>/<name>.yaml
    ws.validate("outdoor_buyer")             # [] when sound, else what is wrong
    ws.enrich("train", "--model", "outdoor_buyer")   # exit code, as on the command line

Environment variables (set by `make notebook`, or by a test):
ENRICH_ENV (local), ENRICH_CONF (overlay files, separated by the OS path separator),
ENRICH_LAKEHOUSE (lakehouse.root), ENRICH_RUN_DATE (YYYY-MM-DD; default today, UTC).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import yaml
from pyspark.sql import DataFrame, SparkSession

from pipelines.core import lakehouse
from pipelines.core.config import Config, custom_models_folder, load_config

_OPEN: dict[str, "Workspace"] = {}


@dataclass
class Workspace:
    cfg: Config
    spark: SparkSession
    run_date: date
    conf_files: tuple[str, ...]
    overrides: tuple[str, ...]

    def table(self, name: str) -> DataFrame:
        """A lakehouse table by its name in conf (`lakehouse.tables`)."""
        return lakehouse.read(self.spark, self.cfg.table(name))

    def tables(self) -> list[str]:
        """The names of the tables that exist in this lakehouse."""
        return [name for name in self.cfg.get("lakehouse.tables")
                if lakehouse.exists(self.spark, self.cfg.table(name))]

    def enrich_args(self) -> list[str]:
        args = ["--env", self.cfg.env, "--run-date", self.run_date.isoformat()]
        for file in self.conf_files:
            args += ["--conf", file]
        for pair in self.overrides:
            args += ["--set", pair]
        return args

    def enrich(self, command: str, *argv: str) -> int:
        """Run an `enrich` command in this kernel, on this lakehouse and run date; its exit code."""
        from pipelines.cli import main
        return main([command, *argv, *self.enrich_args()])

    @property
    def custom_dir(self) -> Path:
        folder = custom_models_folder(self.cfg.get("models.custom_dir", None))
        if folder is None:
            raise ValueError("models.custom_dir is null (or ENRICH_CUSTOM_DIR empty): custom models are not read "
                             "from files")
        return folder

    def save_model(self, name: str, definition: dict) -> Path:
        """Write a custom model definition where the nightly reads it, and reload conf."""
        self.custom_dir.mkdir(parents=True, exist_ok=True)
        path = self.custom_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(definition, sort_keys=False))
        self.cfg = load_config(self.cfg.env, self.conf_files, self.overrides)
        return path

    def validate(self, name: str | None = None) -> list[str]:
        """What `enrich models validate` would report ([] when the definitions are sound)."""
        from pipelines.models import catalogue
        return catalogue.validate(self.spark, self.cfg, name)


def open_workspace(env: str | None = None, conf_files: tuple[str, ...] | None = None,
                   overrides: tuple[str, ...] = ()) -> Workspace:
    """The workspace for this kernel (opened once; later calls return it)."""
    from pipelines.core.session import build_session

    env = env or os.environ.get("ENRICH_ENV", "local")
    if conf_files is None:
        conf_files = tuple(p for p in os.environ.get("ENRICH_CONF", "").split(os.pathsep) if p)
    if os.environ.get("ENRICH_LAKEHOUSE"):
        overrides = (f"lakehouse.root={os.environ['ENRICH_LAKEHOUSE']}", *overrides)
    key = repr((env, conf_files, overrides))
    if key not in _OPEN:
        cfg = load_config(env, conf_files, overrides)
        run_date = (date.fromisoformat(os.environ["ENRICH_RUN_DATE"]) if os.environ.get("ENRICH_RUN_DATE")
                    else datetime.now(timezone.utc).date())
        spark = build_session(cfg)
        spark.sparkContext.setLogLevel("ERROR")
        _OPEN[key] = Workspace(cfg, spark, run_date, tuple(conf_files), tuple(overrides))
    return _OPEN[key]


KERNEL_NAME = "profile-enrichment"
# Run by the kernel as it starts, so a notebook finds the session open.
KERNEL_STARTUP = "from pipelines.workspace import open_workspace; ws = open_workspace(); spark = ws.spark"


def install_kernel() -> str:
    """Install the "Profile enrichment" Jupyter kernel into this environment; its path."""
    import json
    import sys
    import tempfile

    from jupyter_client.kernelspec import KernelSpecManager

    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     f"--IPKernelApp.exec_lines={KERNEL_STARTUP}"],
            "display_name": "Profile enrichment (Spark)", "language": "python"}
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "kernel.json").write_text(json.dumps(spec, indent=1))
        return KernelSpecManager().install_kernel_spec(folder, KERNEL_NAME, prefix=sys.prefix)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["install-kernel"]:
        sys.exit("usage: python -m pipelines.workspace install-kernel")
    print(f"kernel installed: {install_kernel()}")
