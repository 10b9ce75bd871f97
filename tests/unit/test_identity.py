import pyspark.sql.functions as F
from pyspark.sql import types as T

from pipelines.xdm.identity_map import identities, primary_identity
from pipelines.xdm.schema import IDENTITY_MAP

PRIORITY = ["CRMID", "Email", "ECID"]
SCHEMA = T.StructType([T.StructField("rec", T.StringType()), T.StructField("identityMap", IDENTITY_MAP)])


def _item(value, primary=None):
    return {"id": value, "primary": primary, "authenticatedState": None}


def _primary_of(spark, rows):
    df = spark.createDataFrame(rows, SCHEMA)
    picked = primary_identity(identities(F.col("identityMap")), PRIORITY)
    return {r["rec"]: (r["ns"], r["id"]) for r in
            df.select("rec", picked["namespace"].alias("ns"), picked["id"].alias("id")).collect()}


def test_flagged_primary_wins_over_namespace_priority(spark):
    rows = [("r1", {"ECID": [_item("e1", True)], "CRMID": [_item("c1", False)]})]
    assert _primary_of(spark, rows) == {"r1": ("ECID", "e1")}


def test_without_a_flag_the_priority_list_decides_and_unlisted_namespaces_come_last(spark):
    rows = [
        ("r1", {"ECID": [_item("e1")], "Email": [_item("a@x")]}),
        ("r2", {"Phone": [_item("555")], "ECID": [_item("e2")]}),
        ("r3", {"Phone": [_item("555")]}),
        ("r4", {"CRMID": [_item("c9"), _item("c2")]}),
    ]
    assert _primary_of(spark, rows) == {
        "r1": ("Email", "a@x"), "r2": ("ECID", "e2"), "r3": ("Phone", "555"), "r4": ("CRMID", "c2")}


def test_blank_and_null_ids_are_not_identities(spark):
    df = spark.createDataFrame([("r1", {"ECID": [_item(""), _item(None)]}), ("r2", None)], SCHEMA)
    sizes = {r["rec"]: r["n"] for r in df.select("rec", F.size(identities(F.col("identityMap"))).alias("n")).collect()}
    assert sizes == {"r1": 0, "r2": 0}
