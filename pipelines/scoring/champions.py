"""Which version scores a model tonight: its champion. A model without one (it could not be
trained yet, or was refused) is skipped with a warning that names it, and the other models
are scored and published; a model conf marks `required` stops the night instead (exit code 3)."""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion

from pipelines.core.context import RunContext
from pipelines.core.errors import GateError
from pipelines.models import artifacts, registry
from pipelines.models.specs import required
from pipelines.quality.gate import QualityChecks
from pipelines.quality.suites import ExpectationOutcome


def champion_or_skip(checks: QualityChecks, key: str, registered_name: str, required: bool) -> ModelVersion | None:
    """The champion of `registered_name`, or None (recorded as a warning) when it has none."""
    champion = registry.champion(registered_name)
    if champion is not None:
        return champion
    if required:
        raise GateError(f"model {key} ({registered_name}) has no champion to score with, and models.{key}.required "
                        "is true")
    checks.add([ExpectationOutcome(
        suite="model_gates", check=f"{key}.champion_present", expectation=f"{registered_name} has a champion to "
        "score with", severity="warning", success=False, samples=[],
        observed="no version has passed its gates yet: skipped tonight; its profile columns keep what they hold")],
        0.0)
    checks.ctx.progress(f"{key}: no champion yet, skipped tonight")
    return None


def affinity_champion(ctx: RunContext, checks: QualityChecks, key: str) -> tuple[str, ModelVersion, dict] | None:
    """An affinity model's registered name, champion and logged parameters; None when it has
    no champion (skipped, as `champion_or_skip`)."""
    name = str(ctx.cfg.get(f"models.{key}.registered_name"))
    champion = champion_or_skip(checks, key, name, required(ctx.cfg, key))
    if champion is None:
        return None
    return name, champion, artifacts.affinity_parameters(champion.run_id)
