"""Training data from past snapshots, for the models that learn a label per person (the
propensities and the custom classifiers and regressors):

    holdout   = run_date - horizon            the latest as-of date whose label is complete
    training  = holdout - k * cadence         earlier as-of dates, k = 1 .. training_snapshots

Each snapshot is the person features as of its date (events strictly before it) with the
label from the horizon after it. The union is written to gold/training_sets (one partition
per model and training run date), checked by the `training_set` suite, and read back for
the fit: what was trained on is what the table holds.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, reduce
from typing import Callable

import pyspark.sql.functions as F
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature
from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.core.context import RunContext
from pipelines.core.errors import BadInputError
from pipelines.features.build import person_features
from pipelines.features.run import check_features
from pipelines.core.reproducible import in_canonical_order
from pipelines.models import artifacts, registry
from pipelines.models.customer_base import CUSTOMER_BASE_COLUMNS, CustomerBase
from pipelines.models.propensity import SnapshotPlan, classifier_pipeline, snapshot_plan
from pipelines.models.specs import ModelSpec
from pipelines.models.training.lifecycle import Trainer
from pipelines.quality import model_gates
from pipelines.quality.gate import QualityChecks
from pipelines.quality.model_gates import Decision


@dataclass
class PinnedEvents:
    """silver/events at the Delta version the step read, so a training run can be
    reproduced with time travel; persisted because every snapshot and label reads it.

    Person features are computed once per as-of date for the whole step: models with the
    same horizon train on the same dates, and the `features` suite checks each date once."""
    frame: DataFrame
    path: str
    version: int
    windows: tuple[int, ...]
    lookback_days: int
    customer_base: CustomerBase
    _features: dict[date, DataFrame] = field(default_factory=dict)
    _checked: set[date] = field(default_factory=set)

    @classmethod
    def read(cls, ctx: RunContext) -> "PinnedEvents":
        path = ctx.cfg.table("silver_events")
        version = lakehouse.version(ctx.spark, path)
        frame = (ctx.spark.read.format("delta").option("versionAsOf", version).load(path)
                 .persist(StorageLevel.MEMORY_AND_DISK))
        return cls(frame, path, version, tuple(ctx.cfg.get("features.windows_days")),
                   int(ctx.cfg.get("features.eligibility_lookback_days")),
                   CustomerBase(frame, int(ctx.cfg.get("models.lifetime_value.spend_decimals"))))

    def features(self, as_of: date) -> DataFrame:
        """Feature rows as of `as_of`, from events strictly before it."""
        if as_of not in self._features:
            self._features[as_of] = (self.frame.transform(person_features(as_of, self.windows, self.lookback_days))
                                     .persist(StorageLevel.MEMORY_AND_DISK))
        return self._features[as_of]

    def check_features(self, checks: QualityChecks, dates) -> None:
        """The `features` suite on the feature rows of the `dates` not checked yet this step."""
        unchecked = [d for d in dict.fromkeys(dates) if d not in self._checked]
        if unchecked:
            # Checked on a local checkpoint: GX's twenty-odd queries run faster over checkpointed
            # rows than over a union of cached frames. The snapshots stay cached, filled by the
            # checkpoint's pass, for the training sets. The checkpoint's blocks go when Spark's
            # cleaner finds the frame unreferenced (DataFrame.unpersist does not reach them).
            rows = reduce(DataFrame.unionByName, [self.features(d) for d in unchecked]).localCheckpoint()
            check_features(checks, rows)
            self._checked.update(unchecked)

    def release(self) -> None:
        for frame in self._features.values():
            frame.unpersist()
        self.customer_base.release()
        self.frame.unpersist()

    @cached_property
    def _span(self):
        return self.frame.agg(F.min("event_date").alias("first"), F.max("event_date").alias("last")).first()

    @property
    def first_date(self) -> date | None:
        return self._span["first"]

    @property
    def last_date(self) -> date | None:
        return self._span["last"]


def labelled_snapshot(events: PinnedEvents, spec: ModelSpec, as_of: date, customer_base: bool) -> DataFrame:
    rows = events.features(as_of).transform(spec.with_extra_features(events.frame, as_of, events.lookback_days))
    if customer_base:
        rows = rows.transform(events.customer_base.features(as_of, spec.horizon_days))
    return rows.transform(spec.labels(events.frame, as_of))


class SnapshotTrainer(Trainer):
    """A model of a `ModelSpec`, trained on labelled snapshots; subclasses fit and judge."""

    def __init__(self, ctx: RunContext, checks: QualityChecks, spec: ModelSpec, events: PinnedEvents):
        self.ctx, self.checks, self.spec, self.events = ctx, checks, spec, events
        self.key = spec.key
        self.registered_name = spec.registered_name
        self.retrain_every_days = spec.retrain_every_days
        self.required = spec.required
        self.model_cfg = ctx.cfg.get(f"models.{spec.key}")
        # The built-in propensities also take the customer-base features, when conf asks.
        self.customer_base = not spec.is_custom and bool(ctx.cfg.get("features.customer_base"))
        self.inputs = spec.inputs(ctx.cfg.get("features.windows_days")) + (
            list(CUSTOMER_BASE_COLUMNS) if self.customer_base else [])
        self.stored: DataFrame | None = None   # this training run's rows of gold/training_sets
        self.plan: SnapshotPlan | None = None

    def prepare(self) -> Decision:
        """Write tonight's training set, check it, and decide whether it has enough labels of
        each class and events covering every snapshot."""
        ctx, spec, cfg = self.ctx, self.spec, self.ctx.cfg
        try:
            plan = snapshot_plan(ctx.run_date, spec.horizon_days, int(self.model_cfg["cadence_days"]),
                                 int(self.model_cfg["training_snapshots"]))
        except ValueError as err:
            raise BadInputError(f"models.{spec.key}: {err}") from err
        self.plan = plan
        dates = plan.training + (plan.holdout,)
        self.events.check_features(self.checks, dates)
        if self.customer_base and (why := self.events.customer_base.unavailable(dates)):
            ctx.progress(f"{spec.key}: trained without the customer-base features: no fit {why}")
            self.customer_base = False
            self.inputs = [c for c in self.inputs if c not in CUSTOMER_BASE_COLUMNS]
        snapshots = [labelled_snapshot(self.events, spec, d, self.customer_base) for d in dates]
        training_set = (reduce(DataFrame.unionByName, snapshots)
                        .withColumn("model", F.lit(spec.key))
                        .withColumn("training_run_date", F.lit(ctx.run_date).cast("date"))
                        .withColumn("split", F.when(F.col("as_of_date") == F.lit(plan.holdout), "holdout")
                                    .otherwise("train")))
        set_path = cfg.table("training_sets")
        this_set = (F.col("model") == F.lit(spec.key)) & (F.col("training_run_date") == F.lit(ctx.run_date))
        lakehouse.replace_where(training_set, set_path,
                                f"model = '{spec.key}' AND training_run_date = '{ctx.run_date.isoformat()}'",
                                partition_by=["model", "training_run_date"], merge_schema=True)
        self.stored = lakehouse.read(ctx.spark, set_path).where(this_set).drop("model").cache()
        bounds = cfg.get(f"quality.training.{spec.key}", None) or cfg.get("quality.training.default")
        # A regressor's "class" is whether the target is positive (spent, came back): the label
        # rate bounds and the labels-per-class gate apply to that.
        classes = (self.stored.withColumn("label", (F.col("label") > 0).cast("double")) if spec.is_regressor
                   else self.stored)
        # A training set that fails its suite cannot make tonight's model: the model is skipped
        # with the checks named, unless it is required, when the night stops as for any gate.
        outcomes = self.checks.run_suite("training_set", classes, {
            "min_label_rate": float(bounds["min_label_rate"]), "max_label_rate": float(bounds["max_label_rate"])},
            blocking=self.required)
        self.checks.enforce()
        failed = [o for o in outcomes if o.blocks]
        if failed:
            return Decision(allowed=False, check="training_set", rule="the training_set suite passes",
                            observed="; ".join(o.describe() for o in failed),
                            reason="the training set fails " + ", ".join(o.check for o in failed))
        class_counts: dict[str, dict[float, int]] = {}
        for row in classes.groupBy("split", "label").count().collect():
            class_counts.setdefault(row["split"], {})[row["label"]] = row["count"]
        rules = cfg.get("quality.sufficiency")
        decision = model_gates.sufficiency(
            class_counts, int(rules["min_labels_per_class"]), self.events.first_date, self.events.last_date,
            plan.training[0], ctx.run_date, int(rules["min_history_days"]), int(rules["max_staleness_days"]))
        if decision.allowed:
            ctx.progress(f"training set: {sum(class_counts.get('train', {}).values())} rows from "
                         f"{len(plan.training)} snapshots, holdout {sum(class_counts.get('holdout', {}).values())} "
                         f"rows as of {plan.holdout}")
        return decision

    @property
    def holdout(self) -> DataFrame:
        return self.stored.where("split = 'holdout'")

    def training_rows(self) -> DataFrame:
        """The training split in canonical order, persisted: the search, the fit and the
        counts each read it, and each would otherwise shuffle it into that order again."""
        return in_canonical_order(self.stored.where("split = 'train'"), "person_id", "as_of_date").persist(
            StorageLevel.MEMORY_AND_DISK)

    def spark_model_logger(self, model: PipelineModel, output_example: float) -> Callable[[str], object]:
        """Logs `model` with mlflow.spark under a registered name. A few holdout rows give MLflow
        the input and output schema; the model itself stays in Spark."""
        sample = self.holdout.select(*self.inputs).limit(5).toPandas()
        signature = infer_signature(sample, [output_example] * len(sample))
        requirements = [f"pyspark=={self.ctx.spark.version}"]
        return lambda name: registry.log_spark_model(model, "model", registered_model_name=name,
                                                     signature=signature, pip_requirements=requirements)

    def fit_chosen(self, train: DataFrame) -> tuple[PipelineModel, dict, list[dict]]:
        """The model fitted on `train` with conf's settings or the search's best: (model,
        settings, every candidate the search measured)."""
        settings, search = self._search(train)
        self.ctx.progress(f"fitting {self.what_fits}")
        return self.fitter()(train, self.inputs, settings), settings, search

    @abstractmethod
    def _search(self, train: DataFrame) -> tuple[dict, list[dict]]:
        """The settings to fit with, and what the search measured of each candidate."""

    def search_artifacts(self, search: list[dict]) -> dict[str, dict]:
        """The search's candidates and what each measured, when there was a search."""
        if not search:
            return {}
        return {artifacts.SEARCH: {"validation_as_of": self.plan.training[-1].isoformat(), "candidates": search}}

    @abstractmethod
    def holdout_measure(self, scored: DataFrame) -> float:
        """The measure the promotion gate compares, of the holdout scored by a model."""

    def measure_champion(self, champion: ModelVersion) -> tuple[float | None, str]:
        """The champion on this holdout, when it used the same inputs (else not comparable)."""
        if registry.run_params(champion.run_id).get("features") != ",".join(self.inputs):
            return None, f"champion v{champion.version} used other features; not compared"
        model = registry.load_spark_model(self.registered_name, champion.version)
        return self.holdout_measure(model.transform(self.holdout)), f"champion v{champion.version}"

    def fitter(self) -> Callable[[DataFrame, list[str], dict], PipelineModel]:
        """(training rows, inputs, settings) -> fitted model: gradient-boosted trees for the
        built-ins, the declared estimator or entry point for custom models."""
        seed = int(self.model_cfg["seed"])
        if self.spec.definition is not None:
            return self.spec.definition.fitter(seed)
        return lambda rows, inputs, settings: classifier_pipeline(inputs, settings, seed).fit(rows)

    def run_params(self, settings: dict) -> dict:
        """What a training run logs as MLflow parameters: what it predicts, the dates, the Delta
        versions it read (for time travel), its inputs and settings."""
        ctx, spec, plan, events = self.ctx, self.spec, self.plan, self.events
        return {
            "model": spec.key, "target": spec.target, "run_date": ctx.run_date.isoformat(),
            "horizon_days": spec.horizon_days, "eligible_purchased_within_days": spec.purchased_within_days,
            "holdout_as_of": plan.holdout.isoformat(),
            "training_as_of": ",".join(d.isoformat() for d in plan.training),
            "silver_events_path": events.path, "silver_events_version": events.version,
            "training_set_path": ctx.cfg.table("training_sets"),
            "training_set_version": lakehouse.version(ctx.spark, ctx.cfg.table("training_sets")),
            "features": ",".join(self.inputs), **{f"{self.settings_prefix}_{k}": v for k, v in settings.items()},
            **self._definition_params(),
        }

    @property
    def settings_prefix(self) -> str:
        definition = self.spec.definition
        return "gbt" if definition is None else (definition.estimator or "params")

    @property
    def what_fits(self) -> str:
        definition = self.spec.definition
        if definition is None:
            return "gradient-boosted trees"
        return definition.entry_point or definition.estimator.replace("_", " ")

    def _definition_params(self) -> dict:
        """A custom model's definition, logged so a run says what it learned to predict."""
        definition = self.spec.definition
        if definition is None:
            return {}
        return {"label": definition.label, "eligible": definition.eligible or "everyone with a feature row",
                "estimator": definition.estimator or "", "entry_point": definition.entry_point or "",
                **{f"extra_feature_{name}": sql for name, sql in definition.extra_features}}

    @property
    def purpose(self) -> str:
        spec = self.spec
        if spec.definition is None:
            return f"{spec.target} within {spec.horizon_days} days"
        return f"custom {spec.definition.kind}, {spec.definition.label} within {spec.horizon_days} days"

    def release(self) -> None:
        if self.stored is not None:
            self.stored.unpersist()
