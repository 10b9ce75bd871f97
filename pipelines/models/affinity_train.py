"""Training the category-affinity model (pipelines/models/affinity.py), in time order:

    validation = run_date - 2 * horizon   choose the prior strength: strengths before it,
                                          judged on the interactions of the next horizon
    holdout    = run_date - horizon       judge the chosen one (and the popularity baseline,
                                          the ALS challenger, the champion) on the last horizon

The version is registered as an MLflow pyfunc model (its parameters; affinity is computed
from tonight's interactions at scoring) and becomes champion through its gate: precision
at k above the popularity baseline's, and no worse than the champion's on the same holdout.
"""

from __future__ import annotations

from datetime import timedelta

import mlflow
import mlflow.pyfunc
import pandas as pd

from pipelines.core.errors import BadInputError
from pipelines.models import lifecycle, registry
from pipelines.models.affinity import (als_top_categories, future_categories, interaction_strengths,
                                       popularity_top, precision_at_k, top_affinities)
from pipelines.core.context import RunContext
from pipelines.quality.gate import QualityChecks
from pipelines.quality.model_gates import Decision, affinity_promotion

KEY = "affinity"
PARAMETERS_ARTIFACT = "affinity_parameters.json"
LEDGER_METRICS = ("holdout_precision_at_k", "holdout_hit_rate_top1", "holdout_popularity_precision_at_k",
                  "holdout_als_precision_at_k", "holdout_people", "model_version", "promoted", "reused")


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


def settings(ctx: RunContext) -> dict:
    """The conf's fixed parameters (the prior strength is chosen in training); bad ones: exit code 2."""
    model_cfg = ctx.cfg.get(f"models.{KEY}")
    try:
        interaction_strengths(ctx.run_date, dict(model_cfg["interaction_weights"]), float(model_cfg["half_life_days"]),
                              1)
    except ValueError as err:
        raise BadInputError(f"models.{KEY}: {err}") from err
    return {"half_life_days": float(model_cfg["half_life_days"]),
            "interaction_weights": {k: float(v) for k, v in dict(model_cfg["interaction_weights"]).items()},
            "lookback_days": int(ctx.cfg.get("features.eligibility_lookback_days")),
            "top_k": int(model_cfg["top_k"])}


def strengths_as_of(events, parameters: dict, as_of):
    return events.transform(interaction_strengths(as_of, parameters["interaction_weights"],
                                                  parameters["half_life_days"], parameters["lookback_days"]))


def train(ctx: RunContext, checks: QualityChecks, events, experiment_id: str) -> dict:
    """Choose, judge and register tonight's affinity model (or reuse one; see lifecycle).
    `events` is the step's pinned read of silver/events (models.run.PinnedEvents)."""
    model_cfg = ctx.cfg.get(f"models.{KEY}")
    name = str(model_cfg["registered_name"])
    earlier = lifecycle.already_trained(ctx, name, int(model_cfg["retrain_every_days"]))
    if earlier is not None:
        return lifecycle.reused(name, *earlier)
    horizon = int(model_cfg["horizon_days"])
    holdout, validation = ctx.run_date - timedelta(days=horizon), ctx.run_date - timedelta(days=2 * horizon)
    base = settings(ctx)
    k, weights = base["top_k"], base["interaction_weights"]
    candidates = [float(v) for v in model_cfg["prior_strength"]]

    ctx.progress(f"choosing the prior strength of {candidates} on the {horizon} days from {validation}")
    before_validation = strengths_as_of(events.frame, base, validation).cache()
    validation_future = events.frame.transform(future_categories(validation, holdout, weights)).cache()
    search = [{"prior_strength": prior,
               **precision_at_k(top_affinities(before_validation, prior, k), validation_future, k)}
              for prior in candidates]
    before_validation.unpersist()
    validation_future.unpersist()
    best = max(search, key=lambda r: r["precision_at_k"])
    parameters = {**base, "prior_strength": best["prior_strength"]}

    strengths = strengths_as_of(events.frame, base, holdout).cache()
    future = events.frame.transform(future_categories(holdout, ctx.run_date, weights)).cache()
    try:
        judged = precision_at_k(top_affinities(strengths, parameters["prior_strength"], k), future, k)
        rules = ctx.cfg.get("quality.sufficiency")
        needed = int(rules["min_labels_per_class"])
        enough = judged["people"] >= needed
        decision = Decision(allowed=enough, check="data_sufficiency", rule=f"min_labels_per_class={needed}",
                            observed=f"{judged['people']:.0f} people with interactions before and in the holdout",
                            reason="" if enough else f"only {judged['people']:.0f} people can be judged on the holdout")
        if not enough:
            return lifecycle.refused(ctx, checks, name, decision, f"training refused: {decision.reason}")
        checks.add([lifecycle.gate_outcome(name, decision, "error")], 0.0)
        metrics = {"holdout_precision_at_k": judged["precision_at_k"], "holdout_hit_rate_top1": judged["hit_rate_top1"],
                   "holdout_people": judged["people"],
                   "holdout_popularity_precision_at_k": precision_at_k(popularity_top(strengths, k), future,
                                                                       k)["precision_at_k"]}
        als = model_cfg.get("challenger_als")
        if als:
            ctx.progress("measuring the ALS challenger on the same holdout")
            metrics["holdout_als_precision_at_k"] = precision_at_k(als_top_categories(
                strengths, k, int(als["rank"]), float(als["reg_param"]), float(als["alpha"]),
                int(als["seed"])), future, k)["precision_at_k"]
        ctx.progress(f"affinity: prior strength {parameters['prior_strength']}, holdout precision@{k} "
                     f"{metrics['holdout_precision_at_k']:.3f} over {judged['people']:.0f} people (popularity "
                     f"{metrics['holdout_popularity_precision_at_k']:.3f}"
                     + (f", ALS {metrics['holdout_als_precision_at_k']:.3f}" if als else "") + ")")
        champion_precision, note = _champion_precision(events, name, holdout, future, k)
    finally:
        strengths.unpersist()
        future.unpersist()

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{KEY}-{ctx.run_date}") as mlrun:
        mlflow.log_params({"model": KEY, "run_date": ctx.run_date.isoformat(), "horizon_days": horizon,
                           "holdout_as_of": holdout.isoformat(), "validation_as_of": validation.isoformat(),
                           "silver_events_path": events.path, "silver_events_version": events.version,
                           "top_k": k, "half_life_days": parameters["half_life_days"],
                           "prior_strength": parameters["prior_strength"], "lookback_days": parameters["lookback_days"],
                           **{f"weight_{kind}": w for kind, w in weights.items()},
                           **({f"als_{key}": value for key, value in als.items()} if als else {})})
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"validation_as_of": validation.isoformat(), "candidates": search},
                        "hyperparameter_search.json")
        mlflow.log_dict(parameters, PARAMETERS_ARTIFACT)
        example = pd.DataFrame({"person_id": ["a", "a", "b"], "category": ["Outdoor", "Running", "Outdoor"],
                                "strength": [3.0, 1.0, 0.5]})
        model = AffinityModel(parameters)
        info = mlflow.pyfunc.log_model(name="model", python_model=model, registered_model_name=name,
                                       input_example=example,
                                       signature=registry.signature(example, model.predict(None, example)),
                                       pip_requirements=["pandas"])
        version = str(info.registered_model_version)
    gate = model_cfg["promotion"]
    decision = affinity_promotion(metrics["holdout_precision_at_k"], metrics["holdout_popularity_precision_at_k"],
                                  champion_precision, float(gate["min_lift_over_popularity"]),
                                  float(gate["max_precision_drop"]), note)
    outputs = {**metrics, "model_version": int(version), "reused": 0, "mlflow_run_id": mlrun.info.run_id,
               "parameters": parameters}
    return lifecycle.register_decision(ctx, checks, name, version, metrics, decision, outputs)


def _champion_precision(events, name: str, holdout, future, k: int) -> tuple[float | None, str]:
    """The champion's precision at k on this holdout, with its own parameters."""
    current = registry.champion(name)
    if current is None:
        return None, "no champion yet"
    parameters = registry.load_dict(current.run_id, PARAMETERS_ARTIFACT)
    if int(parameters["top_k"]) != k:
        return None, f"champion v{current.version} ranked a top {parameters['top_k']}; not compared"
    top = top_affinities(strengths_as_of(events.frame, parameters, holdout), float(parameters["prior_strength"]), k)
    return precision_at_k(top, future, k)["precision_at_k"], f"champion v{current.version}"
