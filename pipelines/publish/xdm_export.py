"""Profile rows -> XDM Individual Profile records for a Profile-enabled dataset.

Each record carries `identityMap` with the person's primary identity and the attributes
under the tenant's field group, `_<tenant>.insights`: a group per model prefix
(`convert`, `churn`, `ltv`, `affinity`, `productAffinity`, `contentAffinity`, `segment`,
`engagement`) with camelCase fields,
and when and by which run they were made. `field_group_schema` describes that field
group as JSON Schema, ready to be created in a schema registry.
"""

from __future__ import annotations

import re
from typing import Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame
from pyspark.sql import types as T

from pipelines.core.errors import BadInputError
from pipelines.publish.profile_table import IDENTITY_FIELDS, KEY

TENANT = re.compile(r"^_[A-Za-z0-9]+$")
PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _groups(columns: Sequence[str], prefixes: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Attribute columns by the longest prefix they start with; the rest (run fields)."""
    identity = {f.name for f in IDENTITY_FIELDS}
    groups: dict[str, list[str]] = {p: [] for p in prefixes}
    rest = []
    for column in columns:
        if column in identity:
            continue
        owners = [p for p in prefixes if column.startswith(p + "_")]
        if owners:
            groups[max(owners, key=len)].append(column)
        else:
            rest.append(column)
    return {p: cs for p, cs in groups.items() if cs}, rest


def _renamed(column: str, name: str) -> Column:
    return F.col(f"`{column}`").alias(name)


def insights_column(columns: Sequence[str], prefixes: Sequence[str]) -> Column:
    groups, rest = _groups(columns, prefixes)
    fields = [F.struct(*[_renamed(c, camel(c[len(prefix) + 1:])) for c in group]).alias(camel(prefix))
              for prefix, group in groups.items()]
    return F.struct(*fields, *[_renamed(c, camel(c)) for c in rest])


def xdm_profiles(tenant: str, prefixes: Sequence[str]):
    """Profile rows -> one column per XDM record field: `identityMap` and `<tenant>`.
    `prefixes` are the attribute groups (propensity, ltv, affinity, segment, engagement)."""
    if not TENANT.match(tenant or ""):
        raise BadInputError(f"publish.xdm.tenant must look like _acme (an underscore, then letters or digits), "
                            f"got {tenant!r}")

    def _apply(rows: DataFrame) -> DataFrame:
        primary = F.array(F.struct(F.col("primary_identity_id").alias("id"), F.lit(True).alias("primary")))
        identity_map = F.when(F.col("primary_identity_namespace").isNotNull(),
                              F.create_map(F.col("primary_identity_namespace"), primary))
        insights = insights_column([c for c in rows.columns if c != KEY], prefixes)
        return rows.select(identity_map.alias("identityMap"), F.struct(insights.alias("insights")).alias(tenant))
    return _apply


def json_type(data_type: T.DataType) -> dict:
    """The JSON Schema of a Spark type as Spark's JSON writer renders it (nulls are left out)."""
    if isinstance(data_type, T.StructType):
        return {"type": "object", "additionalProperties": False,
                "properties": {f.name: json_type(f.dataType) for f in data_type.fields}}
    if isinstance(data_type, T.ArrayType):
        return {"type": "array", "items": json_type(data_type.elementType)}
    if isinstance(data_type, T.StringType):
        return {"type": "string"}
    if isinstance(data_type, (T.IntegerType, T.LongType, T.ShortType)):
        return {"type": "integer"}
    if isinstance(data_type, (T.DoubleType, T.FloatType, T.DecimalType)):
        return {"type": "number"}
    if isinstance(data_type, T.BooleanType):
        return {"type": "boolean"}
    if isinstance(data_type, T.DateType):
        return {"type": "string", "format": "date"}
    if isinstance(data_type, T.TimestampType):
        return {"type": "string", "format": "date-time"}
    raise ValueError(f"no JSON Schema for Spark type {data_type.simpleString()}")


def field_group_schema(records: T.StructType, tenant: str) -> dict:
    """The field group `_<tenant>.insights` of `records` (the frame `xdm_profiles` makes),
    in the schema registry's shape: a definition extending the Individual Profile class."""
    tenant_type = records[tenant].dataType
    return {
        "$schema": "http://json-schema.org/draft-06/schema#",
        "title": "Profile enrichment insights",
        "description": "Propensities with per-person factors, lifetime value, category, product and content "
                       "affinity, engagement and segment, written nightly by the profile enrichment pipeline.",
        "type": "object",
        "meta:intendedToExtend": [PROFILE_CLASS],
        "definitions": {"insights": {"properties": {tenant: json_type(tenant_type)}}},
        "allOf": [{"$ref": "#/definitions/insights"}],
    }
