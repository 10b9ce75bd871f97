"""What a registered version carries beside its model, by name, and how the steps that use
a champion read it: scoring, the oracle and `enrich models` read these, never the training
code.

    value = lifetime_value_model(champion.run_id)
    segments = segment_table(champion.run_id)
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow.spark
import pandas as pd

from pipelines.models import registry
from pipelines.models.counting_models import CountingModel, parameters_from_dict
from pipelines.models.lifetime_value import GammaGamma

AFFINITY_PARAMETERS = "affinity_parameters.json"       # prior strength, weights, half-life, top k
LIFETIME_VALUE_PARAMETERS = "lifetime_value_parameters.json"   # counting model, Gamma-Gamma, the value method
SEGMENTS = "segments.json"                             # each segment's id, name and typical member
PRECISION_CURVES = "holdout_precision_curves.json"     # product/content affinity: precision@1..k per candidate
ITEM_SIMILARITIES = "item_similarities.parquet"        # a co-occurrence version's neighbours, as of its run date
SEARCH = "hyperparameter_search.json"                  # every candidate of a training and its measure
DECILES = "holdout_deciles.json"                       # a regressor's predicted and actual per decile
JUDGED_REGRESSOR = "judged_model"    # lifetime value: the run tag naming the regressor its holdout judged

# The ways to value a buyer: a counting model with Gamma-Gamma ("<counting model>_gamma_gamma",
# BG/NBD's below), or the regressor; the one with the lowest holdout MAE is registered.
PROBABILISTIC = "bgnbd_gamma_gamma"
REGRESSOR = "gbt_regressor"


def probabilistic_method(counting_model: str) -> str:
    return f"{counting_model}_gamma_gamma"


def affinity_parameters(run_id: str) -> dict:
    return registry.load_dict(run_id, AFFINITY_PARAMETERS)


def item_similarities(run_id: str) -> pd.DataFrame | None:
    """The neighbours a co-occurrence version lends through (`item`, `neighbour`,
    `similarity`); None for other candidates, and for versions logged before they were kept."""
    return registry.optional_table(run_id, ITEM_SIMILARITIES)


@dataclass(frozen=True)
class ValueModel:
    """A lifetime-value version: its counting model (BG/NBD or another) and Gamma-Gamma
    fits, which always give P(alive) and the expected purchases, and the way it values a
    buyer's spend."""
    counts: CountingModel
    spend: GammaGamma
    horizon_days: int
    method: str     # probabilistic_method(counts.name), or REGRESSOR: its Spark ML pipeline gives the value


def lifetime_value_model(run_id: str, judged: bool = False) -> ValueModel:
    """The version's parameters for tonight's values (refitted up to its run date), or with
    `judged` the ones its holdout judged (versions logged before the refit have only those)."""
    logged = registry.load_dict(run_id, LIFETIME_VALUE_PARAMETERS)
    counts, spend = parameters_from_dict(logged.get("judged", logged) if judged else logged)
    # Versions logged before the regressor existed are probabilistic.
    return ValueModel(counts, spend, int(logged["horizon_days"]), logged.get("value_method", PROBABILISTIC))


def judged_regressor(run_id: str, model_name: str, version: str):
    """A regressor-valued version's model as its holdout judged it: logged beside the
    registered refit, or the registered model itself for versions logged before the refit."""
    uri = registry.run_tags(run_id).get(JUDGED_REGRESSOR)
    return mlflow.spark.load_model(uri) if uri else registry.load_spark_model(model_name, version)


def segment_table(run_id: str) -> list[dict]:
    return registry.load_dict(run_id, SEGMENTS)["segments"]
