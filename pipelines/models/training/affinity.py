"""The category-affinity model (pipelines/models/affinity.py), in time order:

    validation = run_date - 2 * horizon   choose the half-life and the prior strength:
                                          strengths before it, judged on the interactions
                                          of the next horizon
    holdout    = run_date - horizon       judge the chosen one (and the popularity baseline,
                                          the ALS challenger, the champion) on the last horizon

The version is registered as an MLflow pyfunc model (its parameters; affinity is computed
from tonight's interactions at scoring) and becomes champion through its gate: precision
at k above the popularity baseline's, and no worse than the champion's on the same holdout.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import mlflow.pyfunc
import pandas as pd
import pyspark.sql.functions as F
from mlflow.entities.model_registry import ModelVersion

from pipelines.core.context import RunContext
from pipelines.core.errors import BadInputError
from pipelines.models import artifacts, registry
from pipelines.models.affinity import (CATEGORIES, Dimension, als_top_categories, future_categories,
                                       interaction_strengths, popularity_top, precision_at_k, strengths_as_of,
                                       top_affinities)
from pipelines.models.specs import AFFINITY
from pipelines.models.training.lifecycle import Candidate, ConfiguredTrainer
from pipelines.models.training.snapshots import PinnedEvents
from pipelines.quality.model_gates import Decision, affinity_promotion


class AffinityModel(mlflow.pyfunc.PythonModel):
    """The chosen parameters as an MLflow model: rows of person_id, category and strength
    (see interaction_strengths) -> person_id, rank, category, affinity (top k per person)."""

    def __init__(self, parameters: dict):
        self.parameters = parameters

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        prior, k = float(self.parameters["prior_strength"]), int(self.parameters["top_k"])
        per_category = model_input.groupby("category")["strength"].sum()
        shares = per_category / per_category.sum()
        popular = list(shares.sort_values(ascending=False, kind="stable").index[:k])
        rows = []
        for person, own in model_input.groupby("person_id"):
            strength = dict(zip(own["category"], own["strength"], strict=True))
            total = sum(strength.values())
            candidates = set(strength) | set(popular)
            scored = sorted(((-(strength.get(c, 0.0) + prior * shares[c]) / (total + prior), c) for c in candidates))
            rows += [(person, rank + 1, c, -negative) for rank, (negative, c) in enumerate(scored[:k])]
        return pd.DataFrame(rows, columns=["person_id", "rank", "category", "affinity"])


def half_life_choices(model_cfg: Mapping, key: str) -> list[float]:
    """`half_life_days`: one number, or several for training to choose from on the validation
    window (the first wins a tie); bad ones: exit code 2."""
    value = model_cfg["half_life_days"]
    choices = [value] if isinstance(value, (int, float)) else list(value)
    if not choices or any(not isinstance(v, (int, float)) or v <= 0 for v in choices):
        raise BadInputError(f"models.{key}.half_life_days must be a number > 0 or a list of them, got {value!r}")
    return [float(v) for v in choices]


def weight_choices(model_cfg: Mapping, key: str) -> list[dict[str, float]]:
    """`interaction_weights`: one mapping of interaction kind to weight, or several for
    training to choose from; the first also says which interactions the holdout counts."""
    value = model_cfg["interaction_weights"]
    choices = [value] if isinstance(value, Mapping) else list(value)
    if not choices or any(not isinstance(c, Mapping) or not c for c in choices):
        raise BadInputError(f"models.{key}.interaction_weights must map interaction kinds to weights, or be a "
                            f"list of such mappings; got {value!r}")
    return [{kind: float(w) for kind, w in dict(c).items()} for c in choices]


def strength_choices(ctx: RunContext, key: str, dimension: Dimension = CATEGORIES) -> list[dict]:
    """Every (half_life_days, interaction_weights) the conf lets training choose from,
    weights first; bad ones: exit code 2."""
    model_cfg = ctx.cfg.get(f"models.{key}")
    choices = [{"half_life_days": half_life, "interaction_weights": weights}
               for weights in weight_choices(model_cfg, key) for half_life in half_life_choices(model_cfg, key)]
    try:
        for choice in choices:
            interaction_strengths(ctx.run_date, choice["interaction_weights"], choice["half_life_days"], 1,
                                  dimension=dimension)
    except ValueError as err:
        raise BadInputError(f"models.{key}: {err}") from err
    return choices


def strength_text(parameters: Mapping) -> str:
    """The chosen half-life and weights, for a progress line."""
    weights = ", ".join(f"{kind} {weight:g}" for kind, weight in parameters["interaction_weights"].items())
    return f"half-life {parameters['half_life_days']:g} days, weights {weights}"


def fixed_parameters(ctx: RunContext) -> dict:
    """The conf's fixed parameters, with its first half-life and weights (training chooses
    among the conf's, and the prior strength); `judged_weights`: the interactions the
    holdout counts. Bad ones: exit code 2."""
    model_cfg = ctx.cfg.get(f"models.{AFFINITY}")
    first = strength_choices(ctx, AFFINITY)[0]
    return {**first, "judged_weights": first["interaction_weights"],
            "lookback_days": int(ctx.cfg.get("features.eligibility_lookback_days")),
            "top_k": int(model_cfg["top_k"])}


class PrecisionGate:
    """The affinity models' promotion: holdout precision@k above popularity's by the conf's
    lift, and no lower than the champion's on the same holdout by more than its drop."""

    model_cfg: dict

    def promotion(self, metrics: dict[str, float], champion: float | None, note: str) -> Decision:
        gate = self.model_cfg["promotion"]
        return affinity_promotion(metrics["holdout_precision_at_k"], metrics["holdout_popularity_precision_at_k"],
                                  champion, float(gate["min_lift_over_popularity"]),
                                  float(gate["max_precision_drop"]), note)


class AffinityTrainer(PrecisionGate, ConfiguredTrainer):
    key = AFFINITY
    ledger_metrics = ("holdout_precision_at_k", "holdout_hit_rate_top1", "holdout_popularity_precision_at_k",
                      "holdout_als_precision_at_k", "holdout_people", "model_version", "promoted", "reused")
    purpose = "the categories each person leans to"

    def __init__(self, ctx: RunContext, events: PinnedEvents):
        super().__init__(ctx)
        self.events = events
        self.horizon = int(self.model_cfg["horizon_days"])
        self.holdout = ctx.run_date - timedelta(days=self.horizon)
        self.validation = ctx.run_date - timedelta(days=2 * self.horizon)
        self.strengths = self.future = None

    def prepare(self) -> Decision:
        """Choose the half-life and the prior strength on the validation window, then judge
        them on the holdout: enough people must have interactions both before the holdout
        and in it."""
        ctx, frame = self.ctx, self.events.frame
        base = fixed_parameters(ctx)
        self.k, self.weights = base["top_k"], base["judged_weights"]
        candidates = [float(v) for v in self.model_cfg["prior_strength"]]
        settings = strength_choices(ctx, AFFINITY)
        ctx.progress(f"choosing among {len(settings)} half-life and weight setting(s) and the prior strength of "
                     f"{candidates} on the {self.horizon} days from {self.validation}")
        categories = frame.select(F.explode("categories").alias("category")).distinct().limit(2).count()
        if categories < 2:
            # One category (a single-category store) is everyone's affinity: nothing to rank.
            return Decision(allowed=False, check="data_sufficiency", rule="at least 2 categories",
                            observed=f"{categories} distinct categor{'y' if categories == 1 else 'ies'} in the events",
                            reason=f"the events name {categories} categor{'y' if categories == 1 else 'ies'}; "
                                   "affinity ranks several")
        validation_future = frame.transform(future_categories(self.validation, self.holdout, self.weights)).cache()
        self.search = []
        for setting in settings:
            before_validation = strengths_as_of(frame, {**base, **setting}, self.validation).cache()
            self.search += [{**setting, "prior_strength": prior,
                             **precision_at_k(top_affinities(before_validation, prior, self.k), validation_future,
                                              self.k)}
                            for prior in candidates]
            before_validation.unpersist()
        validation_future.unpersist()
        best = max(self.search, key=lambda r: r["precision_at_k"])
        self.parameters = {**base, **{key: best[key] for key in ("half_life_days", "interaction_weights",
                                                                 "prior_strength")}}
        self.strengths = strengths_as_of(frame, self.parameters, self.holdout).cache()
        self.future = frame.transform(future_categories(self.holdout, ctx.run_date, self.weights)).cache()
        self.judged = precision_at_k(top_affinities(self.strengths, self.parameters["prior_strength"], self.k),
                                     self.future, self.k)
        needed = int(ctx.cfg.get("quality.sufficiency.min_labels_per_class"))
        people = self.judged["people"]
        return Decision(allowed=people >= needed, check="data_sufficiency", rule=f"min_labels_per_class={needed}",
                        observed=f"{people:.0f} people with interactions before and in the holdout",
                        reason="" if people >= needed else f"only {people:.0f} people can be judged on the holdout")

    def fit(self) -> Candidate:
        ctx, k, parameters = self.ctx, self.k, self.parameters
        metrics = {"holdout_precision_at_k": self.judged["precision_at_k"],
                   "holdout_hit_rate_top1": self.judged["hit_rate_top1"], "holdout_people": self.judged["people"],
                   "holdout_popularity_precision_at_k": precision_at_k(popularity_top(self.strengths, k), self.future,
                                                                       k)["precision_at_k"]}
        als = self.model_cfg.get("challenger_als")
        if als:
            ctx.progress("measuring the ALS challenger on the same holdout")
            metrics["holdout_als_precision_at_k"] = precision_at_k(als_top_categories(
                self.strengths, k, int(als["rank"]), float(als["reg_param"]), float(als["alpha"]),
                int(als["seed"])), self.future, k)["precision_at_k"]
        ctx.progress(f"affinity: {strength_text(parameters)}, prior strength {parameters['prior_strength']}, "
                     f"holdout precision@{k} "
                     f"{metrics['holdout_precision_at_k']:.3f} over {self.judged['people']:.0f} people (popularity "
                     f"{metrics['holdout_popularity_precision_at_k']:.3f}"
                     + (f", ALS {metrics['holdout_als_precision_at_k']:.3f}" if als else "") + ")")
        params = {"model": self.key, "run_date": ctx.run_date.isoformat(), "horizon_days": self.horizon,
                  "holdout_as_of": self.holdout.isoformat(), "validation_as_of": self.validation.isoformat(),
                  "silver_events_path": self.events.path, "silver_events_version": self.events.version,
                  "top_k": k, "half_life_days": parameters["half_life_days"],
                  "prior_strength": parameters["prior_strength"], "lookback_days": parameters["lookback_days"],
                  **{f"weight_{kind}": w for kind, w in parameters["interaction_weights"].items()},
                  **({f"als_{key}": value for key, value in als.items()} if als else {})}
        return Candidate(
            metrics=metrics, params=params, log_model=lambda name: _log_model(name, parameters),
            artifacts={artifacts.SEARCH: {"validation_as_of": self.validation.isoformat(), "candidates": self.search},
                       artifacts.AFFINITY_PARAMETERS: parameters},
            outputs={"parameters": parameters})

    def measure_champion(self, champion: ModelVersion) -> tuple[float | None, str]:
        """The champion's precision at k on this holdout, with its own parameters."""
        parameters = artifacts.affinity_parameters(champion.run_id)
        if int(parameters["top_k"]) != self.k:
            return None, f"champion v{champion.version} ranked a top {parameters['top_k']}; not compared"
        top = top_affinities(strengths_as_of(self.events.frame, parameters, self.holdout),
                             float(parameters["prior_strength"]), self.k)
        return precision_at_k(top, self.future, self.k)["precision_at_k"], f"champion v{champion.version}"

    def release(self) -> None:
        for frame in (self.strengths, self.future):
            if frame is not None:
                frame.unpersist()


def _log_model(name: str, parameters: dict):
    example = pd.DataFrame({"person_id": ["a", "a", "b"], "category": ["Outdoor", "Running", "Outdoor"],
                            "strength": [3.0, 1.0, 0.5]})
    model = AffinityModel(parameters)
    return mlflow.pyfunc.log_model(name="model", python_model=model, registered_model_name=name,
                                   input_example=example,
                                   signature=registry.signature(example, model.predict(None, example)),
                                   pip_requirements=["pandas"])
