"""One training lifecycle for every model, built-in or custom:

    reuse      a version trained for this run date (a rerun), or a champion not yet due
    prepare    tonight's training data, and whether there is enough of it (sufficiency gate)
    fit        the candidates, judged on the holdout: a `Candidate` (or a `Refusal`)
    champion   the current champion measured on the same holdout
    log        an MLflow run: parameters, metrics, artifacts, plots, the registered version
    gate       the model's promotion rule; the alias `champion` moves only when it allows

Each model is a `Trainer` that supplies its own preparation, fit, champion measure and
promotion rule; `train` runs the rest, the same way for all.

    outputs = train(ctx, checks, SegmentsTrainer(ctx), experiment_id)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from pipelines.core import plots
from pipelines.core.context import RunContext
from pipelines.core.errors import BadInputError, GateError
from pipelines.models import registry
from pipelines.models.propensity import parameter_grid
from pipelines.models.specs import required
from pipelines.quality.gate import QualityChecks
from pipelines.quality.model_gates import Decision
from pipelines.quality.suites import ExpectationOutcome

# Version tags that are metrics without the holdout_ prefix (segments judge the people they segment;
# a classifier may register a simpler candidate; a lifetime value may keep its holdout fit).
METRIC_TAGS = ("silhouette", "k", "people", "chosen_is_baseline", "chosen_is_customer_base", "refit_accepted")


@dataclass
class Candidate:
    """A model fitted and judged on its holdout, ready to be logged and gated."""

    metrics: dict[str, float]                  # MLflow metrics, the version's tags, the ledger
    params: dict[str, Any]                     # MLflow parameters: what was read, chosen and fitted
    log_model: Callable[[str], Any]            # logs the model under a registered name; its ModelInfo
    artifacts: dict[str, dict] = field(default_factory=dict)   # JSON artifacts by file name
    tables: dict[str, Any] = field(default_factory=dict)       # Parquet artifacts (pandas frames) by file name
    figures: dict[str, Any] = field(default_factory=dict)      # matplotlib figures by artifact path
    outputs: dict[str, Any] = field(default_factory=dict)      # more for the summary and report


class Refusal(Exception):
    """Tonight's data cannot make this model (a likelihood that does not converge, say)."""

    def __init__(self, decision: Decision):
        super().__init__(decision.reason)
        self.decision = decision


class Trainer(ABC):
    """What one model brings to the lifecycle; everything else is `train`'s."""

    key: str                   # the conf key under `models`
    registered_name: str       # the MLflow registered model
    retrain_every_days: int
    required: bool = False     # without a champion, a refusal blocks the night (else: skipped tonight)
    ledger_metrics: tuple[str, ...] = ()   # outputs the run ledger keeps as numbers

    @property
    @abstractmethod
    def purpose(self) -> str:
        """What the model predicts, for the progress line that opens its training."""

    def reused_outputs(self, version: ModelVersion) -> dict:
        """What the step reports of a version used again, beyond its tags."""
        return {}

    @abstractmethod
    def prepare(self) -> Decision:
        """Read tonight's training data; whether there is enough of it."""

    @abstractmethod
    def fit(self) -> Candidate:
        """Fit and judge on the holdout; raise `Refusal` when the data cannot make a model."""

    @abstractmethod
    def measure_champion(self, champion: ModelVersion) -> tuple[float | None, str]:
        """The champion's measure on the same holdout (None when not comparable), and a note
        naming the version or why it was not measured."""

    @abstractmethod
    def promotion(self, metrics: dict[str, float], champion: float | None, note: str) -> Decision:
        """The model's promotion gate on the candidate's metrics and the champion's measure."""

    @abstractmethod
    def release(self) -> None:
        """Free what `prepare` and `fit` kept cached (also after a failure)."""


class ConfiguredTrainer(Trainer, ABC):
    """A built-in model other than the propensities, configured under `models.<key>`."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.model_cfg = ctx.cfg.get(f"models.{self.key}")
        self.registered_name = str(self.model_cfg["registered_name"])
        self.retrain_every_days = int(self.model_cfg["retrain_every_days"])
        self.required = required(ctx.cfg, self.key)


def train(ctx: RunContext, checks: QualityChecks, trainer: Trainer, experiment_id: str) -> dict:
    """Run `trainer` through the lifecycle; the step's outputs for the model."""
    name = trainer.registered_name
    earlier = already_trained(ctx, name, trainer.retrain_every_days)
    if earlier is not None:
        version, why = earlier
        return {**reused(name, version, why), **trainer.reused_outputs(version)}
    try:
        decision = trainer.prepare()
        if not decision.allowed:
            return refused(ctx, checks, name, decision, f"training refused: {decision.reason}",
                           required=trainer.required)
        checks.add([gate_outcome(name, decision, "error")], 0.0)
        try:
            candidate = trainer.fit()
        except Refusal as refusal:
            return refused(ctx, checks, name, refusal.decision, f"training refused: {refusal.decision.reason}",
                           required=trainer.required)
        current = registry.champion(name)
        champion, note = (None, "no champion yet") if current is None else trainer.measure_champion(current)
    finally:
        trainer.release()
    version, run_id = _log(ctx, trainer, candidate, experiment_id)
    decision = trainer.promotion(candidate.metrics, champion, note)
    outputs = {**candidate.metrics, "model_version": int(version), "reused": 0, "mlflow_run_id": run_id,
               **candidate.outputs}
    return register_decision(ctx, checks, name, version, candidate.metrics, decision, outputs,
                             required=trainer.required)


def _log(ctx: RunContext, trainer: Trainer, candidate: Candidate, experiment_id: str) -> tuple[str, str]:
    """One MLflow run for the candidate; (the registered version, the run id)."""
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{trainer.key}-{ctx.run_date}") as run:
        mlflow.log_params(candidate.params)
        mlflow.log_metrics(candidate.metrics)
        for file_name, content in candidate.artifacts.items():
            mlflow.log_dict(content, file_name)
        for file_name, rows in candidate.tables.items():
            registry.log_table(rows, file_name)
        for path, figure in candidate.figures.items():
            mlflow.log_figure(figure, path)
            plots.close(figure)
        info = candidate.log_model(trainer.registered_name)
        return str(info.registered_model_version), run.info.run_id


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
            outputs: dict | None = None, required: bool = False) -> dict:
    """A gate said no: the champion stays and the night goes on (a warning). Without a
    champion the model is skipped tonight, its profile columns keeping what they hold, and
    the other insights are published; only a `required` model stops the night (exit code 3)."""
    current = registry.champion(model_name)
    checks.add([gate_outcome(model_name, decision, "error" if current is None and required else "warning")], 0.0)
    if current is None and required:
        raise GateError(f"{decision.check} gate: {model_name}: {what}; there is no champion to score with, "
                        "and the model is required")
    note = f"{what}; " + (f"champion v{current.version} stays" if current else
                          "no champion yet, so it is skipped tonight")
    ctx.progress(note)
    return {**(outputs or {}), "promoted": 0, "champion_version": int(current.version) if current else None,
            "gate": note}


def register_decision(ctx: RunContext, checks: QualityChecks, model_name: str, version: str, metrics: dict,
                      decision: Decision, outputs: dict, required: bool = False) -> dict:
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
        return refused(ctx, checks, model_name, decision, what, outputs, required)
    checks.add([gate_outcome(model_name, decision, "error")], 0.0)
    registry.promote(model_name, version)
    ctx.progress(f"{model_name} v{version} is the champion (MLflow run {outputs.get('mlflow_run_id')})")
    return {**outputs, "promoted": 1, "champion_version": int(version)}
