"""Property-based: random and mangled records never crash parsing and always land somewhere."""

import json
from datetime import date

import pyspark.sql.functions as F
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.ingest.landing import FILE_ERROR, RAW, SOURCE_FILE
from pipelines.ingest.parse import (REASON, bad_records, flag_records, good_records, later_repeats, parse_records,
                                    register_normaliser, without)
from pipelines.xdm.schema import EXPERIENCE_EVENT

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                      st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)
identity_item = st.fixed_dictionaries({"id": st.one_of(st.text(max_size=6), st.integers(), st.none())},
                                      optional={"primary": st.one_of(st.booleans(), st.text(max_size=3)),
                                                "xdm:id": st.text(max_size=4)})
namespace = st.sampled_from(["ECID", "CRMID", "Email", "https://data.adobe.io/entities/namespace/4", "Phone"])
event = st.fixed_dictionaries(
    {},
    optional={
        "_id": st.one_of(st.text(max_size=6), st.integers()),
        "@id": st.text(max_size=6),
        "timestamp": st.one_of(st.just("2026-02-01T10:00:00Z"), st.text(max_size=10), st.integers()),
        "xdm:timestamp": st.just("2026-01-01T00:00:00+02:00"),
        "eventType": st.text(max_size=12),
        "identityMap": st.one_of(st.dictionaries(namespace, st.lists(identity_item, max_size=3), max_size=3),
                                 json_value),
        "commerce": st.one_of(json_value, st.fixed_dictionaries({"order": st.dictionaries(
            st.sampled_from(["priceTotal", "payments", "currencyCode", "xdm:priceTotal"]), json_value)})),
        "productListItems": st.one_of(json_value, st.lists(st.dictionaries(
            st.sampled_from(["SKU", "quantity", "priceTotal", "productCategories", "color"]), json_value), max_size=3)),
        "_acme": json_value,
    })


@st.composite
def landing_record(draw) -> bytes:
    """An event serialised, then maybe mangled the ways real exports are: cut, bad bytes, noise."""
    raw = json.dumps(draw(event)).encode()
    damage = draw(st.sampled_from(["none", "none", "truncate", "bad-bytes", "noise", "not-json"]))
    if damage == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif damage == "bad-bytes":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe9\x00", b"\xed\xa0\x80"])) + raw[at:]
    elif damage == "noise":
        raw = draw(st.binary(min_size=1, max_size=30))
    elif damage == "not-json":
        raw = json.dumps(draw(json_value)).encode()
    return raw


@pytest.fixture(autouse=True)
def _normaliser(spark):
    register_normaliser(spark)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(records=st.lists(landing_record(), min_size=1, max_size=40))
def test_random_and_mangled_records_are_always_accounted_for(spark, records):
    rows = [(bytearray(r), f"file:///landing/part-{i % 3}.json", None) for i, r in enumerate(records)]
    raw = spark.createDataFrame(rows, f"{RAW} binary, {SOURCE_FILE} string, {FILE_ERROR} string")
    flagged = (raw.transform(parse_records(EXPERIENCE_EVENT, {"4": "ECID"}))
               .transform(flag_records(["_id", "timestamp"], "timestamp")).cache())
    good = good_records(flagged, ["CRMID", "Email", "ECID"], date(2026, 3, 1))
    bad = bad_records(flagged)
    good_count, bad_count = good.count(), bad.count()
    assert good_count + bad_count == len(records)
    assert bad.where(F.col(REASON).isNull() | F.col("raw").isNull()).count() == 0
    assert good.where(F.col("_id").isNull() | F.col("primary_id").isNull()).count() == 0
    unique = without(good, later_repeats(good, "_id", ["timestamp"])).count()
    assert unique == good.select("_id").distinct().count()
    flagged.unpersist()
