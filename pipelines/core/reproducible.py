"""The same rows give the same model and the same scores, however their files lie.

A night resumed after a crash rewrites a table in other files than a clean night would,
and Spark reads other files as other partitions in another order. Whatever draws per
partition (the trees' row subsampling, k-means|| seeding) or adds floating-point numbers
in partition order (sums, means, standard deviations) then comes out slightly different:
a score one bit off, or a different model. Every fit reads its rows through
`in_canonical_order`, and the sums a published value is made of use `money_sum` (money)
or `exact_sum` (other doubles).
"""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame
from pyspark.sql.types import DecimalType

# Each term rounded to 18 decimals (an error of at most 5e-19), then added exactly: the
# total no longer depends on the order of its terms. Holds totals below 1e20.
EXACT = DecimalType(38, 18)


def in_canonical_order(rows: DataFrame, *keys: str) -> DataFrame:
    """`rows` hash-partitioned on the first key into `spark.sql.shuffle.partitions`
    partitions (a deployment's setting, not its executor count of the moment), each sorted
    by `keys`. `keys` must identify a row, or ties keep their arrival order."""
    if not keys:
        raise ValueError("in_canonical_order needs the columns that identify a row")
    partitions = int(rows.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    return rows.repartition(partitions, keys[0]).sortWithinPartitions(*keys)


def exact_sum(column: str | Column) -> Column:
    """SUM of a double column that does not depend on the order of its terms."""
    value = F.col(column) if isinstance(column, str) else column
    return F.sum(value.cast(EXACT)).cast("double")


# Money is added in whole units and in billionths of a unit, far below any currency's minor unit.
MONEY_PARTS_PER_UNIT = 1_000_000_000


def money_sum(column: str | Column) -> Column:
    """SUM of amounts of money that does not depend on the order of its terms, at the speed
    of a plain sum.

    Each amount is split into whole units and billionths (rounded to the nearest: an error
    of at most 5e-10 per amount), and both are added as 64-bit integers, which is exact.
    `exact_sum`'s 38-digit decimals are added by BigDecimal, a third slower over a night's
    features. Good for groups of up to about 9 billion amounts; the two integer totals are
    exact, so the double made of them is the same whatever order the rows came in.

    The billionths are rounded by `floor(x + 0.5)`, not `round`: Spark rounds a double
    through a BigDecimal, row by row, which was a third of the features' time."""
    value = F.col(column) if isinstance(column, str) else column
    units = F.floor(value)
    parts = F.floor((value - units) * F.lit(float(MONEY_PARTS_PER_UNIT)) + F.lit(0.5))
    return F.sum(units).cast("double") + F.sum(parts).cast("double") / F.lit(float(MONEY_PARTS_PER_UNIT))
