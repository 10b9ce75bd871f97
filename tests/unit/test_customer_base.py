"""Customer-base features: BG/NBD quantities as of a date, from the purchases before it only."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest

from pipelines.models.customer_base import CUSTOMER_BASE_COLUMNS, CustomerBase

AS_OF = date(2026, 6, 1)
SCHEMA = "person_id string, event_date date, is_purchase boolean, revenue double"


def _purchases(rng, people: int, start: date, days: int, rate: float) -> list[tuple]:
    rows = []
    for p in range(people):
        for day in np.flatnonzero(rng.random(days) < rate * (p % 5 + 1) / 3):
            rows.append((f"p{p:03d}", start + timedelta(days=int(day)), True, float(rng.integers(5, 80))))
    return rows


@pytest.fixture(scope="module")
def past():
    rng = np.random.default_rng(11)
    rows = _purchases(rng, 120, AS_OF - timedelta(days=300), 300, 0.01)
    # Page views are events too; only purchases count.
    return rows + [("p000", AS_OF - timedelta(days=3), False, 0.0)]


def _as_dicts(frame) -> dict[str, tuple]:
    return {r["person_id"]: tuple(r[c] for c in CUSTOMER_BASE_COLUMNS) for r in frame.collect()}


def test_the_future_does_not_move_the_features_as_of_a_date(spark, past):
    people = spark.createDataFrame([(f"p{p:03d}",) for p in range(125)], "person_id string")
    rng = np.random.default_rng(5)
    future_a = _purchases(rng, 125, AS_OF, 90, 0.02)
    future_b = _purchases(rng, 125, AS_OF, 90, 0.08)     # other people, more purchases, other spend
    seen = []
    for future, partitions in ((future_a, 1), (future_b, 7)):
        events = spark.createDataFrame(past + future, SCHEMA).repartition(partitions)
        base = CustomerBase(events, spend_decimals=2)
        seen.append(_as_dicts(people.transform(base.features(AS_OF, 30))))
        base.release()
    assert seen[0] == seen[1]
    never = dict(zip(CUSTOMER_BASE_COLUMNS, seen[0]["p120"], strict=True))
    assert never.pop("bgnbd_purchase_log_odds") == pytest.approx(math.log(1e-6 / (1 - 1e-6)))
    assert set(never.values()) == {0.0}, "no purchase before the date: not a customer yet"


def test_p_alive_and_expected_purchases_follow_frequency_and_silence(spark):
    start = AS_OF - timedelta(days=200)
    rows = [("steady", start + timedelta(days=d), True, 20.0) for d in range(0, 200, 10)]
    rows += [("gone", start + timedelta(days=d), True, 20.0) for d in range(0, 60, 10)]
    rows += [("once", start + timedelta(days=50), True, 20.0)]
    rows += _purchases(np.random.default_rng(2), 80, start, 200, 0.01)
    base = CustomerBase(spark.createDataFrame(rows, SCHEMA), spend_decimals=2)
    people = spark.createDataFrame([("steady",), ("gone",), ("once",)], "person_id string")
    got = {k: dict(zip(CUSTOMER_BASE_COLUMNS, v, strict=True))
           for k, v in _as_dicts(people.transform(base.features(AS_OF, 60))).items()}
    base.release()
    assert got["steady"]["bgnbd_repeat_purchases"] == 19.0 and got["steady"]["bgnbd_customer_days"] == 200.0
    assert got["gone"]["bgnbd_purchase_span_days"] == 50.0
    assert got["steady"]["bgnbd_p_alive"] > 0.9 > got["gone"]["bgnbd_p_alive"]
    assert got["once"]["bgnbd_p_alive"] == pytest.approx(1.0), "BG/NBD: no repeat, no chance to drop out yet"
    assert got["steady"]["bgnbd_expected_purchases"] > got["gone"]["bgnbd_expected_purchases"]
    assert got["steady"]["bgnbd_expected_value"] > got["gone"]["bgnbd_expected_value"] > 0


def test_no_repeat_buyers_means_no_features_and_says_why(spark):
    rows = [(f"p{p}", AS_OF - timedelta(days=p + 1), True, 10.0) for p in range(20)]
    base = CustomerBase(spark.createDataFrame(rows, SCHEMA), spend_decimals=2)
    assert "repeat purchases" in base.unavailable([AS_OF])
    with pytest.raises(ValueError, match="no customer-base features as of 2026-06-01"):
        base.features(AS_OF, 30)


def test_the_purchase_probability_is_bgnbds_own(spark):
    from lifetimes import BetaGeoFitter
    import pandas as pd

    from pipelines.models.customer_base import purchase_log_odds
    from pipelines.models.lifetime_value import BgNbd, expected_purchases, probability_alive

    params = BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)
    people = np.array([[0.0, 0.0, 0.0], [2.0, 30.0, 38.0], [7.0, 35.0, 38.0], [1.0, 2.0, 38.0]])   # x, t_x, T
    x, t_x, T = people.T
    rows = [(*map(float, p), float(a)) for p, a in zip(people, probability_alive(params, x, t_x, T), strict=True)]
    frame = spark.createDataFrame(rows, "x double, t_x double, T double, p_alive double")
    chance = 1 / (1 + np.exp(-np.array([r[0] for r in frame.select(purchase_log_odds(params, 28)).collect()])))
    # A new customer: BG/NBD's unconditional chance of no purchase in 28 days, as lifetimes computes it.
    fitter = BetaGeoFitter()
    fitter.params_ = pd.Series({"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b})
    assert chance[0] == pytest.approx(1 - fitter.probability_of_n_purchases_up_to_time(28, 0))
    # Never above P(alive), never above the expected count; a frequent recent buyer most likely.
    assert np.all(chance <= probability_alive(params, x, t_x, T) + 1e-12)
    assert np.all(chance <= expected_purchases(params, 28.0, x, t_x, T) + 1e-12)
    assert chance.argmax() == 2
