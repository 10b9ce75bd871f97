"""The models conf declares with a label: the built-in propensities (`models.propensity`),
then the custom classifiers and regressors (`models.custom`, see pipelines/models/custom.py),
and what each predicts.

    for spec in propensity_specs(cfg):             # the classifiers, in conf's order
        rows = features.where(spec.eligible())    # who is trained on and scored
        labelled = rows.transform(spec.labels(events, as_of))

Targets: `purchase` (1.0 = bought within the horizon), `churn` (1.0 = an eligible
customer did not buy within the horizon) and `custom` (1.0 = the model's label
expression holds over the person's events in the horizon).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Callable, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from pipelines.core.config import Config
from pipelines.core.errors import BadInputError
from pipelines.features.build import feature_columns, with_labels
from pipelines.models import custom
from pipelines.models.affinity import PRODUCTS, Dimension, content
from pipelines.models.counting_models import COUNTING_MODELS
from pipelines.models.lifetime_value import BgNbd

TARGETS = ("purchase", "churn")
CUSTOM = "custom"


@dataclass(frozen=True)
class ModelSpec:
    key: str                          # conf key under `models`
    registered_name: str              # the MLflow registered model
    target: str                       # one of TARGETS
    prefix: str                       # profile columns <prefix>_probability, ...
    horizon_days: int
    purchased_within_days: int | None  # eligibility: a purchase this recently (None: everyone)
    retrain_every_days: int
    definition: custom.CustomDefinition | None = None   # custom models only
    required: bool = False            # without a champion tonight: block the night (exit 3), not skip it

    @property
    def is_custom(self) -> bool:
        return self.definition is not None

    @property
    def is_regressor(self) -> bool:
        return self.definition is not None and self.definition.is_regressor

    @property
    def settings_key(self) -> str:
        """The conf key of the estimator's settings (`models.<key>.<settings_key>`)."""
        return "params" if self.is_custom else "gbt"

    def eligible(self) -> Column:
        """Feature rows of the people this model is trained on and scores."""
        if self.definition is not None:
            return self.definition.eligible_rows()
        if self.purchased_within_days is None:
            return F.lit(True)
        return F.col("days_since_last_purchase") <= F.lit(float(self.purchased_within_days))

    def labels(self, events: DataFrame, as_of: date) -> Callable[[DataFrame], DataFrame]:
        """Eligible feature rows as of `as_of` -> the same rows with this target's `label`."""
        if self.definition is not None:
            return self.definition.labels(events, as_of, self.horizon_days)

        def _apply(features: DataFrame) -> DataFrame:
            bought = features.where(self.eligible()).transform(with_labels(events, as_of, self.horizon_days))
            if self.target == "churn":
                return bought.withColumn("label", F.lit(1.0) - F.col("label"))
            return bought
        return _apply

    def inputs(self, windows: Sequence[int]) -> list[str]:
        """The model's input columns, in order."""
        return self.definition.inputs(windows) if self.definition is not None else feature_columns(windows)

    def with_extra_features(self, events: DataFrame, as_of: date,
                            lookback_days: int) -> Callable[[DataFrame], DataFrame]:
        """Feature rows -> plus the model's own features from earlier events (custom models)."""
        if self.definition is None:
            return lambda features: features
        return self.definition.with_extra_features(events, as_of, lookback_days)


LIFETIME_VALUE = "lifetime_value"
AFFINITY = "affinity"
PRODUCT_AFFINITY = "product_affinity"
CONTENT_AFFINITY = "content_affinity"
SEGMENTS = "segments"
# The insights beside the propensities, each switched on by `models.<key>.enabled`.
OTHER_MODELS = (LIFETIME_VALUE, AFFINITY, PRODUCT_AFFINITY, CONTENT_AFFINITY, SEGMENTS)
ITEM_AFFINITIES = (PRODUCT_AFFINITY, CONTENT_AFFINITY)


def dimension(cfg: Config, key: str) -> Dimension:
    """What an item-affinity model ranks: products, or content sections by the conf's
    `section_field` (ValueError when it names no such field)."""
    if key == PRODUCT_AFFINITY:
        return PRODUCTS
    return content(str(cfg.get(f"models.{key}.section_field")))


def enabled(cfg: Config, key: str) -> bool:
    return bool(cfg.get(f"models.{key}.enabled", False))


def required(cfg: Config, key: str) -> bool:
    """`models.<key>.required`: a model the night cannot do without. Any other model that
    cannot be trained or scored tonight is skipped with its reason, and the rest go on."""
    value = cfg.get(f"models.{key}.required", False)
    if not isinstance(value, bool):
        raise BadInputError(f"models.{key}.required must be true or false, got {value!r}")
    return value


def custom_keys(cfg: Config) -> list[str]:
    keys = cfg.get("models.custom") or []
    if not isinstance(keys, list):
        raise BadInputError(f"models.custom must be a list of model names, got {keys!r}")
    return [str(k) for k in keys]


def unlisted_models(cfg: Config) -> list[str]:
    """What is wrong with each custom-looking definition (a `kind:`) under `models` that
    neither `models.custom` nor the built-ins name: it would be silently ignored."""
    models = cfg.get("models") or {}
    named = set(custom_keys(cfg)) | set(models.get("propensity") or []) | set(OTHER_MODELS)
    return [f"models.{key} is defined (kind: {value.get('kind')}) but not listed in models.custom, so it is "
            "neither trained nor scored: list it there, or remove it"
            for key, value in models.items() if isinstance(value, dict) and "kind" in value and key not in named]


def model_names(cfg: Config) -> list[str]:
    """Every model `enrich train` trains, in order."""
    return (list(cfg.get("models.propensity") or []) + [key for key in OTHER_MODELS if enabled(cfg, key)]
            + custom_keys(cfg))


def counting_models(cfg: Config) -> list[str]:
    """The counting models lifetime value judges (`models.lifetime_value.counting_models`),
    BG/NBD first: it is always fitted, as the customer-base features rest on it. An unknown
    name: exit code 2."""
    names = [str(name) for name in (cfg.get(f"models.{LIFETIME_VALUE}.counting_models", None) or [])]
    unknown = [name for name in names if name not in COUNTING_MODELS]
    if unknown:
        raise BadInputError(f"models.{LIFETIME_VALUE}.counting_models: unknown {', '.join(map(repr, unknown))}; "
                            f"known: {', '.join(COUNTING_MODELS)}")
    return [BgNbd.name, *(name for name in COUNTING_MODELS if name in names and name != BgNbd.name)]


def propensity_specs(cfg: Config, only: str | None = None) -> list[ModelSpec]:
    """The classifiers of `models.propensity`, then of `models.custom`, in order; `only`
    keeps one of `model_names` (none when it names another kind of model; an unknown name
    or a bad definition: exit code 2)."""
    return [s for s in model_specs(cfg, only) if not s.is_regressor]


def regression_specs(cfg: Config, only: str | None = None) -> list[ModelSpec]:
    """The custom regressors of `models.custom`, in order (`only` as for propensity_specs)."""
    return [s for s in model_specs(cfg, only) if s.is_regressor]


def model_specs(cfg: Config, only: str | None = None) -> list[ModelSpec]:
    """The classifiers of `models.propensity`, then the custom models in conf order (`only`
    as for propensity_specs)."""
    if only is not None and only not in model_names(cfg):
        raise BadInputError(f"--model {only!r} is not a model; known: {', '.join(model_names(cfg))}")
    specs, problems = all_specs(cfg)
    if problems:
        raise BadInputError("; ".join(problems))
    return [s for s in specs if only in (None, s.key)]


def all_specs(cfg: Config) -> tuple[list[ModelSpec], list[str]]:
    """Every classifier and custom regressor spec that parses, and every problem of those
    that do not (for `enrich models validate`, which reports them all)."""
    specs = [_spec(cfg, key) for key in cfg.get("models.propensity") or []]
    problems = []
    for key in custom_keys(cfg):
        spec, found = _custom_spec(cfg, key)
        problems += found
        if spec is not None:
            specs.append(spec)
    problems += _clashes(cfg, specs)
    return specs, problems


def _clashes(cfg: Config, specs: list[ModelSpec]) -> list[str]:
    """Profile prefixes and registered names each model must have to itself."""
    problems = []
    prefixes = [s.prefix for s in specs]
    if len(set(prefixes)) != len(prefixes):
        problems.append(f"models: profile_prefix must differ between models, got {prefixes}")
    others = {str(cfg.get(f"models.{key}.profile_prefix")): key for key in OTHER_MODELS if enabled(cfg, key)}
    if cfg.get("engagement.enabled"):
        others["engagement"] = "engagement"
    for spec in specs:
        if spec.prefix in others:
            problems.append(f"models.{spec.key}.profile_prefix {spec.prefix!r} is taken by {others[spec.prefix]}")
    names = [s.registered_name for s in specs] + [str(cfg.get(f"models.{key}.registered_name"))
                                                  for key in OTHER_MODELS if enabled(cfg, key)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"models: registered_name must differ between models; repeated: {', '.join(repeated)}")
    return problems


def _custom_spec(cfg: Config, key: str) -> tuple[ModelSpec | None, list[str]]:
    model = cfg.get(f"models.{key}", None)
    if key in (cfg.get("models.propensity") or []) or key in OTHER_MODELS:
        return None, [f"models.custom names {key!r}, a built-in model"]
    if not isinstance(model, dict):
        return None, [f"models.custom names {key!r}, but models.{key} is not configured"]
    definition, problems = custom.parse(key, model, feature_columns(cfg.get("features.windows_days")))
    if definition is None:
        return None, problems
    return ModelSpec(key=key, registered_name=str(model["registered_name"]), target=CUSTOM,
                          prefix=str(model["profile_prefix"]), horizon_days=int(model["horizon_days"]),
                          purchased_within_days=None, retrain_every_days=int(model.get("retrain_every_days") or 1),
                          definition=definition, required=required(cfg, key)), []


def _spec(cfg: Config, key: str) -> ModelSpec:
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
    return ModelSpec(key=key, registered_name=str(model["registered_name"]), target=target,
                          prefix=str(model["profile_prefix"]), horizon_days=int(model["horizon_days"]),
                          purchased_within_days=None if within is None else int(within),
                          retrain_every_days=int(model.get("retrain_every_days") or 1), required=required(cfg, key))
