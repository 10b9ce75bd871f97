"""What every model goes through around its fit, whatever it predicts: reuse of a version
already trained for the run date, the retraining cadence, the gate outcomes, and
registration tags and promotion."""

from __future__ import annotations

from datetime import date
from typing import Callable

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from pyspark.sql import DataFrame

from pipelines.core.errors import BadInputError, GateError
from pipelines.models import registry
from pipelines.models.propensity import parameter_grid
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.quality.model_gates import Decision
from pipelines.quality.suites import ExpectationOutcome


# Version tags that are metrics without the holdout_ prefix (segments judge the people they segment).
METRIC_TAGS = ("silhouette", "k", "people")


def already_trained(ctx: RunContext, model_name: str, retrain_every_days: int) -> tuple[ModelVersion, str] | None:
    """The version to use instead of training tonight, and why: one trained for this run
    date (a rerun), or, in the nightly, a champion younger than `retrain_every_days`."""
    existing = registry.version_trained_for(model_name, ctx.run_date.isoformat())
    if existing is not None:
        ctx.progress(f"{model_name} v{existing.version} was trained for {ctx.run_date}; reusing it")
        return existing, "rerun"
    current = registry.champion(model_name)
    if not ctx.scheduled or current is None or registry.RUN_DATE_TAG not in current.tags:
        return None
    trained = date.fromisoformat(current.tags[registry.RUN_DATE_TAG])
    if not 0 <= (ctx.run_date - trained).days < retrain_every_days:
        return None
    ctx.progress(f"{model_name}: champion v{current.version} was trained {trained}; "
                 f"retraining every {retrain_every_days} days, so not tonight")
    return current, "not due"


def reused(model_name: str, version: ModelVersion, why: str) -> dict:
    """The outputs of a version used again: its holdout numbers (from its tags) and its
    promotion state."""
    outputs = {"model_version": int(version.version), "reused": 1, "mlflow_run_id": version.run_id,
               **{k: float(v) for k, v in version.tags.items() if k in METRIC_TAGS or k.startswith("holdout_")}}
    if why == "not due":
        outputs["retrain"] = why
    current = registry.champion(model_name)
    outputs["promoted"] = int(version.tags.get(registry.PROMOTION_TAG) == "promoted")
    outputs["champion_version"] = int(current.version) if current else None
    if not outputs["promoted"]:
        outputs["gate"] = version.tags.get(registry.PROMOTION_TAG, "")
    return outputs


def champion_on_holdout(holdout: DataFrame, model_name: str, inputs: list[str],
                        measure: Callable[[DataFrame], float]) -> tuple[float | None, str]:
    """`measure` of the champion's output on this holdout, when the champion used the same
    inputs (else None), and a note saying which version it was or why it was not measured."""
    current = registry.champion(model_name)
    if current is None:
        return None, "no champion yet"
    if registry.run_params(current.run_id).get("features") != ",".join(inputs):
        return None, f"champion v{current.version} used other features; not compared"
    model = registry.load_spark_model(model_name, current.version)
    return measure(model.transform(holdout)), f"champion v{current.version}"


def search_candidates(ctx: RunContext, key: str, base: dict, plan) -> list[dict]:
    """The settings to fit with: every combination of `models.<key>.search` over `base`, when
    there is more than one and an earlier training snapshot to fit on before the latest
    (which judges them); else `base` alone."""
    try:
        candidates = parameter_grid(base, ctx.cfg.get(f"models.{key}").get("search"))
    except ValueError as err:
        raise BadInputError(f"models.{key}.{err}") from err
    if len(candidates) == 1 or len(plan.training) < 2:
        return candidates[:1]
    ctx.progress(f"searching {len(candidates)} settings: fit before {plan.training[-1]}, judge on it")
    return candidates


def gate_outcome(model_name: str, decision: Decision, severity: str) -> ExpectationOutcome:
    observed = decision.observed + (f"; refused: {decision.reason}" if not decision.allowed else "")
    return ExpectationOutcome(suite="model_gates", check=decision.check,
                              expectation=f"{decision.check}({model_name}): {decision.rule}",
                              severity=severity, success=decision.allowed, observed=observed, samples=[])


def refused(ctx: RunContext, checks: QualityChecks, model_name: str, decision: Decision, what: str,
            outputs: dict | None = None, optional: bool = False) -> dict:
    """A gate said no: the champion stays and the run goes on (a warning), or, with no
    champion to score with, the run stops (exit code 3). An `optional` model (a custom
    one) without a champion is a warning too: it is not scored until a version passes."""
    current = registry.champion(model_name)
    checks.add([gate_outcome(model_name, decision, "warning" if current or optional else "error")], 0.0)
    if current is None and not optional:
        raise GateError(f"{decision.check} gate: {model_name}: {what}; there is no champion to score with")
    note = f"{what}; " + (f"champion v{current.version} stays" if current else "no champion yet, so not scored")
    ctx.progress(note)
    return {**(outputs or {}), "promoted": 0, "champion_version": int(current.version) if current else None,
            "gate": note}


def register_decision(ctx: RunContext, checks: QualityChecks, model_name: str, version: str, metrics: dict,
                      decision: Decision, outputs: dict, optional: bool = False) -> dict:
    """Tag the new version (run date, holdout numbers, promotion state) and promote it
    when the gate allows; otherwise the champion stays."""
    client = MlflowClient()
    client.set_model_version_tag(model_name, version, registry.RUN_DATE_TAG, ctx.run_date.isoformat())
    for key, value in metrics.items():
        client.set_model_version_tag(model_name, version, key, f"{value:.6f}")
    what = f"{model_name} v{version} registered, not promoted: {decision.reason}"
    client.set_model_version_tag(model_name, version, registry.PROMOTION_TAG,
                                 "promoted" if decision.allowed else what)
    if not decision.allowed:
        return refused(ctx, checks, model_name, decision, what, outputs, optional)
    checks.add([gate_outcome(model_name, decision, "error")], 0.0)
    registry.promote(model_name, version)
    ctx.progress(f"{model_name} v{version} is the champion (MLflow run {outputs.get('mlflow_run_id')})")
    return {**outputs, "promoted": 1, "champion_version": int(version)}
