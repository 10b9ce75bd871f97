"""The propensity models conf declares (`models.propensity`), and what each one predicts.

    for spec in propensity_specs(cfg):             # in conf's order
        rows = features.where(spec.eligible())    # who is trained on and scored
        labelled = rows.transform(spec.labels(events, as_of))

Targets: `purchase` (1.0 = bought within the horizon) and `churn` (1.0 = an eligible
customer did not buy within the horizon).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Callable

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from pipelines.config import Config
from pipelines.errors import BadInputError
from pipelines.features.build import with_labels

TARGETS = ("purchase", "churn")


@dataclass(frozen=True)
class PropensitySpec:
    key: str                          # conf key under `models`
    registered_name: str              # the MLflow registered model
    target: str                       # one of TARGETS
    prefix: str                       # profile columns <prefix>_probability, ...
    horizon_days: int
    purchased_within_days: int | None  # eligibility: a purchase this recently (None: everyone)
    retrain_every_days: int

    def eligible(self) -> Column:
        """Feature rows of the people this model is trained on and scores."""
        if self.purchased_within_days is None:
            return F.lit(True)
        return F.col("days_since_last_purchase") <= F.lit(float(self.purchased_within_days))

    def labels(self, events: DataFrame, as_of: date) -> Callable[[DataFrame], DataFrame]:
        """Eligible feature rows as of `as_of` -> the same rows with this target's `label`."""
        def _apply(features: DataFrame) -> DataFrame:
            bought = features.where(self.eligible()).transform(with_labels(events, as_of, self.horizon_days))
            if self.target == "churn":
                return bought.withColumn("label", F.lit(1.0) - F.col("label"))
            return bought
        return _apply


LIFETIME_VALUE = "lifetime_value"
AFFINITY = "affinity"
SEGMENTS = "segments"
# The insights beside the propensities, each switched on by `models.<key>.enabled`.
OTHER_MODELS = (LIFETIME_VALUE, AFFINITY, SEGMENTS)


def enabled(cfg: Config, key: str) -> bool:
    return bool(cfg.get(f"models.{key}.enabled", False))


def model_names(cfg: Config) -> list[str]:
    """Every model `enrich train` trains, in order."""
    return list(cfg.get("models.propensity") or []) + [key for key in OTHER_MODELS if enabled(cfg, key)]


def propensity_specs(cfg: Config, only: str | None = None) -> list[PropensitySpec]:
    """The models of `models.propensity`, in order; `only` keeps one of `model_names`
    (none when it names the lifetime-value model; an unknown name: exit code 2)."""
    keys = list(cfg.get("models.propensity") or [])
    if only is not None and only not in model_names(cfg):
        raise BadInputError(f"--model {only!r} is not a model; known: {', '.join(model_names(cfg))}")
    specs = [_spec(cfg, key) for key in keys if only in (None, key)]
    prefixes = [s.prefix for s in specs]
    if len(set(prefixes)) != len(prefixes):
        raise BadInputError(f"models: profile_prefix must differ between models, got {prefixes}")
    return specs


def _spec(cfg: Config, key: str) -> PropensitySpec:
    model = cfg.get(f"models.{key}", None)
    if not isinstance(model, dict):
        raise BadInputError(f"models.propensity names {key!r}, but models.{key} is not configured")
    target = model.get("target")
    if target not in TARGETS:
        raise BadInputError(f"models.{key}.target must be one of {', '.join(TARGETS)}, got {target!r}")
    within = model.get("eligible_purchased_within_days")
    if target == "churn" and within is None:
        raise BadInputError(f"models.{key}.eligible_purchased_within_days is required for a churn model "
                            "(churn is defined for customers who bought recently)")
    return PropensitySpec(key=key, registered_name=str(model["registered_name"]), target=target,
                          prefix=str(model["profile_prefix"]), horizon_days=int(model["horizon_days"]),
                          purchased_within_days=None if within is None else int(within),
                          retrain_every_days=int(model.get("retrain_every_days") or 1))
