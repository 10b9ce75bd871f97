"""Both notebooks run headless, every cell, on a copy of the nightly's lakehouse, in a
kernel of this environment; a cell error fails the test."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from pipelines.core.config import load_config
from pipelines.models import registry
from pipelines.models.specs import propensity_specs

from .conftest import RUN_DATE

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "enrich-tests"


@pytest.fixture
def workspace(nightly, tmp_path, monkeypatch):
    """A lakehouse copy, conf for the notebooks' kernel, and a kernel spec on this interpreter."""
    root = tmp_path / "lakehouse"
    shutil.copytree(nightly.root, root)
    overlay = tmp_path / "notebook.yaml"
    overlay.write_text(yaml.safe_dump({
        # Conf wins over a model's file: fewer trees than the notebook asks for, to save time.
        "models": {"running_buyer": {"params": {"max_iter": 5}}},
        # 1,500 people: far fewer labels than a real run needs.
        "quality": {"sufficiency": {"min_labels_per_class": 20}},
        # The test session's settings: 1,500 people need neither the local conf's 64 starting
        # shuffle partitions nor its compiled code.
        "spark": {"conf": {"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "2g",
                           "spark.sql.adaptive.coalescePartitions.initialPartitionNum": "2",
                           "spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}},
    }))
    kernels = tmp_path / "jupyter" / "kernels" / KERNEL
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "enrich tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("ENRICH_CUSTOM_DIR", str(tmp_path / "custom"))
    monkeypatch.setenv("ENRICH_LAKEHOUSE", str(root))
    monkeypatch.setenv("ENRICH_CONF", str(overlay))
    monkeypatch.setenv("ENRICH_RUN_DATE", RUN_DATE.isoformat())
    monkeypatch.delenv("MPLBACKEND", raising=False)   # the kernel's inline backend draws into the notebook
    return root, overlay, tmp_path


def _execute(name: str, folder: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name=KERNEL, resources={"metadata": {"path": str(folder)}}).execute()
    return notebook


def _images(notebook) -> int:
    return sum(1 for cell in notebook.cells if cell.cell_type == "code"
               for out in cell.outputs if "image/png" in out.get("data", {}))


def test_the_exploration_notebook_runs_clean_and_draws_its_four_plots(workspace):
    _, _, folder = workspace
    notebook = _execute("explore_xdm.ipynb", folder)
    assert _images(notebook) == 4


def test_the_custom_model_notebook_registers_a_champion_the_next_nightly_scores(workspace):
    root, overlay, folder = workspace
    notebook = _execute("custom_propensity.ipynb", folder)
    assert _images(notebook) == 2
    assert (folder / "custom" / "running_buyer.yaml").is_file()
    cfg = load_config("local", [str(overlay)], overrides=[f"lakehouse.root={root}"])
    assert [s.key for s in propensity_specs(cfg)][-1] == "running_buyer", "the nightly's conf now has it"
    registry.connect(cfg)
    assert int(registry.champion("running_buyer").version) == 1
