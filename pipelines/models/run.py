"""The train step: every model through one lifecycle (pipelines/models/training/lifecycle.py),
built-in first, then the custom ones, or only `enrich train --model NAME`.

Idempotent per run date: a version already trained for the run date is reused, so a
rerun of the nightly scores with the same model and writes the same rows. In the
nightly, a model whose champion is younger than `retrain_every_days` is not retrained.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from pipelines.core.context import RunContext
from pipelines.core.errors import BadInputError
from pipelines.models import custom, registry
from pipelines.models.specs import (AFFINITY, CONTENT_AFFINITY, LIFETIME_VALUE, PRODUCT_AFFINITY, SEGMENTS,
                                   ModelSpec, enabled, model_specs, unlisted_models)
from pipelines.models.training import lifecycle
from pipelines.models.training.affinity import AffinityTrainer
from pipelines.models.training.classifier import ClassifierTrainer
from pipelines.models.training.item_affinity import ItemAffinityTrainer
from pipelines.models.training.lifetime_value import LifetimeValueTrainer
from pipelines.models.training.regressor import RegressorTrainer
from pipelines.models.training.segments import SegmentsTrainer
from pipelines.models.training.snapshots import PinnedEvents
from pipelines.quality.gate import QualityChecks

TRAINERS = (ClassifierTrainer, RegressorTrainer, LifetimeValueTrainer, AffinityTrainer, ItemAffinityTrainer,
            SegmentsTrainer)
# Outputs of any model that the ledger keeps as numbers (`<model>.<metric>`).
LEDGER_METRICS = tuple(dict.fromkeys(name for trainer in TRAINERS for name in trainer.ledger_metrics))


def check_custom_definitions(ctx: RunContext, specs: list[ModelSpec], events: DataFrame) -> None:
    """Spark's verdict on custom models' expressions, estimators and entry points, before
    anything trains (only the schema of `events` is read): exit code 2 on the first problem."""
    windows = ctx.cfg.get("features.windows_days")
    for spec in specs:
        if spec.definition is not None:
            model_cfg = ctx.cfg.get(f"models.{spec.key}")
            problems = custom.analyse(spec.definition, events, windows, model_cfg.get("params") or {},
                                      int(model_cfg["seed"]))
            if problems:
                raise BadInputError("; ".join(problems))


def trainers(ctx: RunContext, checks: QualityChecks, events: PinnedEvents) -> list[lifecycle.Trainer]:
    """The models to train, in order: the propensities, lifetime value, the affinities and
    segments (each when enabled), then the custom models; only `ctx.model` when the user named one."""
    specs = model_specs(ctx.cfg, ctx.model)

    def snapshot_trainer(spec: ModelSpec) -> lifecycle.Trainer:
        kind = RegressorTrainer if spec.is_regressor else ClassifierTrainer
        return kind(ctx, checks, spec, events)

    chosen = [snapshot_trainer(spec) for spec in specs if not spec.is_custom]
    others = {LIFETIME_VALUE: lambda: LifetimeValueTrainer(ctx, events),
              AFFINITY: lambda: AffinityTrainer(ctx, events),
              PRODUCT_AFFINITY: lambda: ItemAffinityTrainer(ctx, events, PRODUCT_AFFINITY),
              CONTENT_AFFINITY: lambda: ItemAffinityTrainer(ctx, events, CONTENT_AFFINITY),
              SEGMENTS: lambda: SegmentsTrainer(ctx)}
    chosen += [make() for key, make in others.items() if enabled(ctx.cfg, key) and ctx.model in (None, key)]
    return chosen + [snapshot_trainer(spec) for spec in specs if spec.is_custom]


def run(ctx: RunContext) -> dict:
    """Train every model (built-in, then custom), or only `ctx.model` when the user named one."""
    experiment_id = registry.connect(ctx.cfg)
    with QualityChecks(ctx) as checks:
        # One pinned read of silver/events for every model of the step; cached on first use,
        # so a night on which no model is due reads nothing.
        events = PinnedEvents.read(ctx)
        check_custom_definitions(ctx, model_specs(ctx.cfg, ctx.model), events.frame)
        for problem in unlisted_models(ctx.cfg):
            ctx.progress(f"warning: {problem}")
        per_model = {}
        try:
            for trainer in trainers(ctx, checks, events):
                ctx.progress(f"model {trainer.key}: {trainer.purpose}")
                per_model[trainer.key] = lifecycle.train(ctx, checks, trainer, experiment_id)
        finally:
            events.release()
        numbers = {f"{key}.{name}": out[name] for key, out in per_model.items()
                   for name in LEDGER_METRICS if isinstance(out.get(name), (int, float))}
        return {"models": per_model, **numbers, **checks.outputs()}
