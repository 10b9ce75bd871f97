"""The e2e lakehouse of the slow tier: generated people run through the real CLI in-process,
in the shared session, twice, with three custom models beside the built-ins. (The fast
tier's small night is `small_nightly`, in tests/conftest.py.)"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest

from pipelines.core import lakehouse
from pipelines.cli import main
from pipelines.core.config import Config, load_config

RUN_DATE = date(2026, 6, 1)
# A declarative and a programmatic custom model, run every night beside the built-ins.
CUSTOM_MODELS = str(Path(__file__).with_name("custom_models.yaml"))
TABLES = ("bronze_events", "bronze_profiles", "quarantine", "identity_graph", "silver_events", "features",
          "training_sets", "scores", "predictions", "lifetime_value", "affinity", "product_affinity",
          "content_affinity", "segments", "profile_enrichment")


@dataclass
class NightlyRun:
    root: Path
    cfg: Config
    args: list[str]
    exit_codes: list[int] = field(default_factory=list)
    versions_after_first: dict[str, int] = field(default_factory=dict)
    stdout_first: str = ""

    def landing_lines(self, kind: str) -> int:
        folder = self.root / "landing" / kind
        return sum(1 for f in folder.iterdir() for line in gzip.open(f, "rt") if line.strip())


@pytest.fixture(scope="session")
def nightly(spark, tmp_path_factory) -> NightlyRun:
    root = tmp_path_factory.mktemp("e2e") / "lakehouse"
    args = ["--run-date", RUN_DATE.isoformat(), "--set", f"lakehouse.root={root}", "--conf", CUSTOM_MODELS,
            "--set", "models.convert_propensity.gbt.max_iter=20", "--set", "models.convert_propensity.search=null",
            "--set", "models.churn_propensity.gbt.max_iter=20",
            # 1,500 people give about 150 buyers per snapshot, not the 500 a real run needs.
            "--set", "quality.sufficiency.min_labels_per_class=20"]
    cfg = load_config("local", [CUSTOM_MODELS], overrides=[f"lakehouse.root={root}"])
    run = NightlyRun(root=root, cfg=cfg, args=args)
    assert main(["generate", "--profiles", "1500", "--days", "240", "--seed", "11", *args]) == 0
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run.exit_codes.append(main(["nightly", *args]))
    run.stdout_first = out.getvalue()
    run.versions_after_first = {t: lakehouse.version(spark, cfg.table(t)) for t in TABLES}
    run.exit_codes.append(main(["nightly", *args]))
    return run


def copy_of(night: NightlyRun, folder: Path) -> NightlyRun:
    """The e2e lakehouse copied into `folder`, with options that point at the copy: for the
    tests that write, so none changes what another reads."""
    root = folder / "lakehouse"
    shutil.copytree(night.root, root)
    args = [f"lakehouse.root={root}" if a.startswith("lakehouse.root=") else a for a in night.args]
    cfg = load_config("local", [CUSTOM_MODELS], overrides=[f"lakehouse.root={root}"])
    return NightlyRun(root=root, cfg=cfg, args=args, exit_codes=list(night.exit_codes),
                      versions_after_first=dict(night.versions_after_first), stdout_first=night.stdout_first)
