"""Engagement, 0-100, from how recently and how much a person interacted. A formula, not a
model: every input is a feature of the run date, so it needs no training and no label.

    recency     = 2 ** (-days_since_last_event / half_life_days)            1 today, 1/2 after a half-life
    activity    = 1 - exp(-weighted_interactions / saturation)             0 without interactions, -> 1
    weighted_interactions = sum of weight * count over the window's page views, product
                            views, cart adds and purchases (a purchase counts more than a page view)
    engagement  = round(100 * (recency_weight * recency + (1 - recency_weight) * activity))

    features.transform(engagement_score(cfg.get("engagement"), windows=[7, 30, 90]))
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

# Feature prefix per interaction kind (the windowed features are <prefix>_<days>d).
INTERACTIONS = ("page_views", "product_views", "cart_adds", "purchases")


def engagement_score(settings: Mapping, windows: Sequence[int]) -> Callable[[DataFrame], DataFrame]:
    """Feature rows -> person_id and `engagement_score` (int, 0-100). Bad settings raise ValueError."""
    window = int(settings["window_days"])
    if window not in windows:
        raise ValueError(f"engagement.window_days {window} is not one of features.windows_days {list(windows)}")
    weights = dict(settings["interaction_weights"])
    unknown = sorted(set(weights) - set(INTERACTIONS))
    if unknown:
        raise ValueError(f"engagement.interaction_weights names {unknown}; known: {list(INTERACTIONS)}")
    half_life, saturation = float(settings["recency_half_life_days"]), float(settings["saturation"])
    recency_weight = float(settings["recency_weight"])
    if half_life <= 0 or saturation <= 0 or not 0 <= recency_weight <= 1 or min(weights.values(), default=0) < 0:
        raise ValueError("engagement needs recency_half_life_days > 0, saturation > 0, recency_weight in [0, 1] "
                         "and interaction weights >= 0")

    def _apply(features: DataFrame) -> DataFrame:
        recency = F.pow(F.lit(2.0), -F.col("days_since_last_event") / F.lit(half_life))
        interactions = sum((F.lit(float(w)) * F.col(f"{kind}_{window}d") for kind, w in weights.items()), F.lit(0.0))
        activity = F.lit(1.0) - F.exp(-interactions / F.lit(saturation))
        blended = F.lit(recency_weight) * recency + F.lit(1.0 - recency_weight) * activity
        return features.select("person_id", F.round(F.lit(100.0) * blended).cast("int").alias("engagement_score"))
    return _apply


def reference_value(days_since_last_event: float, interactions: Mapping[str, float], settings: Mapping) -> int:
    """The same formula on plain numbers (the README's table and the tests)."""
    recency = 2.0 ** (-days_since_last_event / float(settings["recency_half_life_days"]))
    weighted = sum(float(settings["interaction_weights"][k]) * v for k, v in interactions.items())
    activity = 1.0 - math.exp(-weighted / float(settings["saturation"]))
    w = float(settings["recency_weight"])
    return math.floor(100.0 * (w * recency + (1.0 - w) * activity) + 0.5)   # half up, as Spark rounds
