"""Product affinity and content affinity (pipelines/models/item_affinity.py), trained the
same way, in time order:

    validation = run_date - 2 * horizon   choose each candidate's parameters (the half-life
                                          and prior strength with history; co-occurrence's
                                          neighbour weight) on the interactions of the
                                          next horizon
    holdout    = run_date - horizon       judge every candidate, popularity included, on
                                          the last horizon; the best precision@k is registered

The version is an MLflow pyfunc model of the chosen candidate and its parameters (its
items are ranked from tonight's interactions at scoring; a co-occurrence version also
keeps its items' neighbours as of its run date), and becomes champion through
the affinity gate: precision@k above popularity's, no worse than the champion's.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta

import mlflow.pyfunc
import pandas as pd
import pyspark.sql.functions as F
from mlflow.entities.model_registry import ModelVersion
from pyspark.sql import SparkSession

from pipelines.core.context import RunContext
from pipelines.core.errors import BadInputError
from pipelines.core.plots import precision_figure
from pipelines.models import artifacts, registry
from pipelines.models.affinity import Dimension, dimension_of, future_categories, strengths_as_of
from pipelines.models.item_affinity import (CANDIDATES, exclusions_as_of, groups_as_of, neighbours_of, ranking_metrics,
                                           recommend)
from pipelines.models.specs import PRODUCT_AFFINITY, dimension
from pipelines.models.training.affinity import PrecisionGate, strength_choices, strength_text
from pipelines.models.training.lifecycle import Candidate, ConfiguredTrainer
from pipelines.models.training.snapshots import PinnedEvents
from pipelines.quality.model_gates import Decision


class ItemAffinityModel(mlflow.pyfunc.PythonModel):
    """The chosen candidate as an MLflow model: rows of person_id, <item> and strength (see
    interaction_strengths, and optionally category) -> person_id, rank, <item>, score (top k
    per person). Ranks with
    the pipeline's own Spark code, so it needs an active Spark session; the score step
    also leaves out the one-off products each person bought, which it reads from purchases."""

    def __init__(self, parameters: dict):
        self.parameters = parameters
        self.similarities: pd.DataFrame | None = None

    def load_context(self, context) -> None:
        # A co-occurrence version lends through the neighbours kept with it, as the nights do;
        # without them (other candidates, versions logged before) they are counted from the input.
        path = (context.artifacts or {}).get(artifacts.ITEM_SIMILARITIES)
        self.similarities = pd.read_parquet(path) if path else None

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        spark = SparkSession.builder.getOrCreate()
        item = self.parameters["item"]
        strengths = spark.createDataFrame(model_input[["person_id", item, "strength"]])
        # A `category` column names each product's category, for a version that ranks within them.
        groups = (spark.createDataFrame(model_input[[item, "category"]].drop_duplicates(item))
                  if "category" in model_input.columns and self.parameters.get("within_categories") else None)
        top = recommend(strengths, self.parameters, int(self.parameters["top_k"]), item, groups=groups,
                        similarities=getattr(self, "similarities", None))
        return top.orderBy("person_id", "rank").toPandas()


def fixed_parameters(ctx: RunContext, key: str) -> dict:
    """The conf's fixed parameters of `models.<key>`, with its first half-life and weights
    (history chooses among the conf's); `judged_weights`: the interactions the holdout
    counts. Bad ones: exit code 2."""
    model_cfg = ctx.cfg.get(f"models.{key}")
    try:
        ranked = dimension(ctx.cfg, key)
    except ValueError as err:
        raise BadInputError(f"models.{key}: {err}") from err
    first = strength_choices(ctx, key, ranked)[0]
    unknown = [c for c in model_cfg["candidates"] if c not in CANDIDATES]
    if unknown:
        raise BadInputError(f"models.{key}.candidates names {unknown}; known: {', '.join(CANDIDATES)}")
    return {"item": ranked.item, **first, "judged_weights": first["interaction_weights"],
            "lookback_days": int(ctx.cfg.get("features.eligibility_lookback_days")),
            "top_k": int(model_cfg["top_k"]), "consumable": bool(model_cfg.get("consumable", True)),
            "within_categories": bool(model_cfg.get("within_categories", False)),
            **({"section_field": str(model_cfg["section_field"])} if "section_field" in model_cfg else {})}


class ItemAffinityTrainer(PrecisionGate, ConfiguredTrainer):
    ledger_metrics = ("holdout_precision_at_k", "holdout_recall_at_k", "holdout_ndcg_at_k", "holdout_coverage",
                      "holdout_popularity_precision_at_k", "holdout_people", "model_version", "promoted", "reused")

    def __init__(self, ctx: RunContext, events: PinnedEvents, key: str):
        self.key = key
        super().__init__(ctx)
        self.events = events
        self.horizon = int(self.model_cfg["horizon_days"])
        self.holdout = ctx.run_date - timedelta(days=self.horizon)
        self.validation = ctx.run_date - timedelta(days=2 * self.horizon)
        self.cached = []

    @property
    def purpose(self) -> str:
        what = "products" if self.key == PRODUCT_AFFINITY else "content sections"
        return f"the {what} each person is most likely to interact with next"

    def _cache(self, frame):
        self.cached.append(frame.cache())
        return frame

    def _strengths(self, as_of, setting: dict):
        return self._cache(strengths_as_of(self.events.frame, {**self.base, **setting}, as_of, self.dimension))

    def _window(self, as_of, end):
        """What judging on [as_of, end) needs beside the strengths: the interactions in it,
        the exclusions and the products' categories."""
        frame, base = self.events.frame, self.base
        future = self._cache(frame.transform(future_categories(as_of, end, base["judged_weights"], self.dimension)))
        excluded, groups = exclusions_as_of(frame, base, as_of), groups_as_of(frame, base, as_of)
        return (future, None if excluded is None else self._cache(excluded),
                None if groups is None else self._cache(groups))

    def _judge(self, parameters: dict, strengths, window) -> dict:
        future, excluded, groups = window
        top = recommend(strengths, parameters, self.k, self.item, excluded, groups)
        return ranking_metrics(top, future, self.k, self.item, self.catalogue)

    def _choices(self, method: str) -> list[dict]:
        """The parameters to try of one candidate (several only where the conf lists several).
        History's half-life and weights, once chosen, are every later candidate's."""
        cfg, base = self.model_cfg, {**self.base, "method": method}
        if method == "history":
            return [{**base, **setting, "prior_strength": float(p)}
                    for setting in strength_choices(self.ctx, self.key, self.dimension) for p in cfg["prior_strength"]]
        if method == "co_occurrence":
            settings = cfg["co_occurrence"]
            return [{**base, "prior_strength": self.prior, "neighbour_weight": float(w),
                     "neighbours": int(settings["neighbours"]), "max_history": int(settings["max_history"])}
                    for w in settings["neighbour_weight"]]
        if method == "als":
            return [{**base, **{key: cfg["als"][key] for key in ("rank", "reg_param", "alpha", "seed")}}]
        return [base]

    def prepare(self) -> Decision:
        """Choose each candidate's parameters on the validation window; then check that enough
        people can be judged on the holdout (interactions both before it and in it)."""
        ctx, frame = self.ctx, self.events.frame
        self.base = fixed_parameters(ctx, self.key)
        self.dimension: Dimension = dimension_of(self.base)
        self.k, self.item = self.base["top_k"], self.base["item"]
        missing = self.dimension.missing(frame.columns)
        if missing:
            return Decision(allowed=False, check="data_sufficiency", rule=f"silver events with {', '.join(missing)}",
                            observed=f"silver/events has no {', '.join(missing)}",
                            reason=f"silver/events has no {', '.join(missing)} (written by an earlier release); "
                                   "the next ingest of new events adds them")
        methods = [m for m in CANDIDATES if m == "popularity" or m in self.model_cfg["candidates"]]
        items = frame.select(F.explode(self.dimension.items()).alias("item")).where(F.col("item").isNotNull())
        self.catalogue = items.distinct().count()
        if self.catalogue < 2:
            named = f"{self.catalogue} distinct {self.item}{'' if self.catalogue == 1 else 's'}"
            return Decision(allowed=False, check="data_sufficiency", rule=f"at least 2 distinct {self.item}s",
                            observed=f"{named} in the events",
                            reason=f"the events name {named}; affinity ranks several"
                                   + (f" (is models.{self.key}.section_field the field your events fill?)"
                                      if self.item == "section" else ""))
        ctx.progress(f"{self.key}: choosing {', '.join(methods[1:]) or 'nothing'}'s parameters on the "
                     f"{self.horizon} days from {self.validation}, over {self.catalogue} {self.item}s")
        validation = self._window(self.validation, self.holdout)
        self.search, self.prior = [], float(self.model_cfg["prior_strength"][0])
        # Validation strengths by (half-life, weights): each setting is computed once.
        self.chosen, before = {}, {}
        for method in methods:
            options = self._choices(method)
            if len(options) > 1:
                tried = []
                for i, option in enumerate(options):
                    setting = _setting(option)
                    if setting not in before:
                        before[setting] = self._strengths(self.validation, option)
                    tried.append((self._judge(option, before[setting], validation)["precision_at_k"], -i, option))
                    ctx.progress(f"{self.key}: {method} setting {i + 1}/{len(options)}, validation precision@"
                                 f"{self.k} {tried[-1][0]:.3f}")
                self.search += [{**option, "precision_at_k": p} for p, _, option in tried]
                self.chosen[method] = max(tried, key=lambda t: t[:2])[2]
            else:
                self.chosen[method] = options[0]
            if method == "history":
                self.prior = float(self.chosen[method]["prior_strength"])
                strength = {key: self.chosen[method][key] for key in ("half_life_days", "interaction_weights")}
                self.base.update(strength)
                self.chosen["popularity"].update(strength)
                for setting in [s for s in before if s != _setting(self.base)]:
                    before.pop(setting).unpersist()
        self.holdout_window = self._window(self.holdout, ctx.run_date)
        self.holdout_strengths = self._strengths(self.holdout, self.base)
        future = self.holdout_window[0]
        people = (self.holdout_strengths.select("person_id").distinct()
                  .join(future.select("person_id").distinct(), "person_id").count())
        needed = int(ctx.cfg.get("quality.sufficiency.min_labels_per_class"))
        return Decision(allowed=people >= needed, check="data_sufficiency", rule=f"min_labels_per_class={needed}",
                        observed=f"{people} people with interactions before and in the holdout",
                        reason="" if people >= needed else f"only {people} people can be judged on the holdout")

    def fit(self) -> Candidate:
        ctx, k = self.ctx, self.k
        judged = {}
        for method, parameters in self.chosen.items():
            ctx.progress(f"{self.key}: judging {method} on the holdout")
            judged[method] = self._judge(parameters, self.holdout_strengths, self.holdout_window)
        # The best precision@k; a tie goes to the simpler candidate (the order of CANDIDATES).
        best = max(judged, key=lambda m: (judged[m]["precision_at_k"], -CANDIDATES.index(m)))
        chosen, parameters = judged[best], self.chosen[best]
        metrics = {"holdout_precision_at_k": chosen["precision_at_k"], "holdout_recall_at_k": chosen["recall_at_k"],
                   "holdout_ndcg_at_k": chosen["ndcg_at_k"], "holdout_coverage": chosen["coverage"],
                   "holdout_people": chosen["people"],
                   **{f"holdout_{m}_precision_at_k": judged[m]["precision_at_k"] for m in judged}}
        ctx.progress(f"{self.key}: {best} chosen, holdout precision@{k} {chosen['precision_at_k']:.3f} over "
                     f"{chosen['people']:.0f} people ("
                     + ", ".join(f"{m} {judged[m]['precision_at_k']:.3f}" for m in judged)
                     + f"); {strength_text(self.base)}")
        params = {"model": self.key, "run_date": ctx.run_date.isoformat(), "horizon_days": self.horizon,
                  "holdout_as_of": self.holdout.isoformat(), "validation_as_of": self.validation.isoformat(),
                  "silver_events_path": self.events.path, "silver_events_version": self.events.version,
                  "catalogue_size": self.catalogue, "chosen_candidate": best,
                  **{key: value for key, value in parameters.items() if key != "interaction_weights"},
                  **{f"weight_{kind}": w for kind, w in self.base["interaction_weights"].items()}}
        curves = {m: judged[m]["precision_curve"] for m in judged}
        tables = {}
        if best == "co_occurrence":
            # The neighbours are part of the version, like a model's weights: the nights it
            # scores lend through these rather than counting co-occurring pairs again.
            tonight = strengths_as_of(self.events.frame, parameters, ctx.run_date, self.dimension)
            tables[artifacts.ITEM_SIMILARITIES] = neighbours_of(tonight, self.item, parameters)
            ctx.progress(f"{self.key}: {len(tables[artifacts.ITEM_SIMILARITIES])} neighbour pairs as of "
                         f"{ctx.run_date} kept with the version")
        return Candidate(
            metrics=metrics, params=params,
            log_model=lambda name: _log_model(name, parameters, tables.get(artifacts.ITEM_SIMILARITIES)),
            artifacts={artifacts.SEARCH: {"validation_as_of": self.validation.isoformat(), "candidates": self.search},
                       artifacts.AFFINITY_PARAMETERS: parameters,
                       artifacts.PRECISION_CURVES: {"k": k, "candidates": curves}},
            tables=tables,
            figures={"holdout_precision_at_k.png": precision_figure(curves, f"{self.item}s")},
            outputs={"parameters": parameters, "chosen_candidate": best, "precision_curves": curves,
                     "holdout_judged": {m: {name: value for name, value in judged[m].items()
                                            if name != "precision_curve"} for m in judged}})

    def measure_champion(self, champion: ModelVersion) -> tuple[float | None, str]:
        """The champion's precision@k on this holdout, with its own candidate and parameters."""
        parameters = artifacts.affinity_parameters(champion.run_id)
        if int(parameters["top_k"]) != self.k or parameters.get("item") != self.item:
            return None, f"champion v{champion.version} ranked a different top k; not compared"
        future, excluded = self.holdout_window[:2]
        before = strengths_as_of(self.events.frame, parameters, self.holdout, dimension_of(parameters))
        top = recommend(before, parameters, self.k, self.item, excluded,
                        groups_as_of(self.events.frame, parameters, self.holdout))
        return ranking_metrics(top, future, self.k, self.item, self.catalogue)["precision_at_k"], \
            f"champion v{champion.version}"

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()
        self.cached = []


def _setting(parameters: dict) -> tuple:
    """The strengths' settings, as a key: half-life and weights."""
    return parameters["half_life_days"], tuple(sorted(parameters["interaction_weights"].items()))


def _log_model(name: str, parameters: dict, similarities: pd.DataFrame | None = None):
    """The pyfunc model; a co-occurrence version's neighbours go into the model too, so
    that loading it through MLflow ranks as the nights do."""
    item = parameters["item"]
    example = pd.DataFrame({"person_id": ["a", "a", "b"], item: ["x", "y", "x"], "strength": [3.0, 1.0, 0.5]})
    output = pd.DataFrame({"person_id": ["a"], "rank": [1], item: ["x"], "score": [0.5]})
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        if similarities is not None:
            files[artifacts.ITEM_SIMILARITIES] = os.path.join(folder, artifacts.ITEM_SIMILARITIES)
            similarities.to_parquet(files[artifacts.ITEM_SIMILARITIES], index=False)
        return mlflow.pyfunc.log_model(name="model", python_model=ItemAffinityModel(parameters),
                                       artifacts=files or None, registered_model_name=name, input_example=example,
                                       signature=registry.signature(example, output),
                                       pip_requirements=["pandas", "pyarrow", "pyspark"])
