"""Column expressions shared by several steps."""

from __future__ import annotations

import math
from typing import Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column


def _double_sql(value: float) -> str:
    """A Spark SQL literal for exactly this double (repr round-trips; `D` makes it a double)."""
    value = float(value)
    if math.isnan(value):
        return "CAST('NaN' AS DOUBLE)"
    if math.isinf(value):
        return f"CAST('{'' if value > 0 else '-'}Infinity' AS DOUBLE)"
    return f"{value!r}D"


def count_below(value: Column, edges: Sequence[float]) -> Column:
    """How many of `edges` lie strictly below `value` (0 when it is null): a percentile from
    its cut points, a bin from its edges.

    One array literal and one filter: a chain of a hundred `when`s per edge list made plans
    that took seconds to build over Py4J and to analyse, for a few thousand rows."""
    if not len(edges):
        return F.lit(0)
    literal = F.expr("array(" + ", ".join(_double_sql(edge) for edge in edges) + ")")
    return F.size(F.filter(literal, lambda edge: value > edge))
