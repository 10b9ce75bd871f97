"""Population stability index (PSI): has tonight's population moved away from training's?

At training, each feature and the score get bin edges (deciles of the training
population) and the share of that population per bin: the reference, a few numbers per
column, logged with the model. At scoring, tonight's shares in the same bins give

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

Both sides are one distributed aggregation each; only bin shares reach the driver.
A common reading: below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 a major shift.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from pipelines.core.columns import count_below
from pipelines.quality.suites import ExpectationOutcome

SHARE_FLOOR = 1e-4   # an empty bin counts as this share, so the logarithm stays finite

Reference = dict[str, dict[str, list[float]]]   # column -> {"edges": [...], "shares": [...]}


def bin_shares(df: DataFrame, edges: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Share of rows per bin for every column, in one aggregation. Bin k of a column is
    (e[k-1], e[k]]: its index counts the edges below the value."""
    columns = list(edges)
    if not columns:
        return {}
    bins = F.array(*[count_below(F.col(column), edges[column]) for column in columns])
    # One row per column and bin reaches the driver: bounded by the reference, not the rows.
    counted = (df.select(F.posexplode(bins).alias("column", "bin"))
               .groupBy("column", "bin").count().collect())
    counts = {(row["column"], row["bin"]): row["count"] for row in counted}
    # Every row falls in exactly one bin of each column: the first column's counts add up to the rows.
    rows = max(1, sum(n for (position, _), n in counts.items() if position == 0))
    return {column: [counts.get((position, k), 0) / rows for k in range(len(edges[column]) + 1)]
            for position, column in enumerate(columns)}


def reference_profile(df: DataFrame, columns: Sequence[str], bins: int) -> Reference:
    """Decile (for bins=10) edges and shares of `columns` in the training population."""
    if bins < 2:
        raise ValueError(f"quality.drift.bins must be at least 2, got {bins}")
    quantiles = [k / bins for k in range(1, bins)]
    row = df.agg(*[F.percentile_approx(c, quantiles, 10_000).alias(c) for c in columns]).first()
    # Ties (a counter that is mostly zero) collapse edges; the distinct ones define the bins.
    edges = {c: sorted({float(v) for v in (row[c] or [])}) for c in columns}
    shares = bin_shares(df, edges)
    return {c: {"edges": edges[c], "shares": shares[c]} for c in columns}


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    if len(expected) != len(actual):
        raise ValueError(f"bins differ: {len(expected)} expected shares, {len(actual)} actual")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, SHARE_FLOOR), max(a, SHARE_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def drift_outcomes(reference: Reference, current: Sequence[DataFrame], thresholds: Mapping[str, Mapping],
                   score_column: str, model: str | None = None) -> list[ExpectationOutcome]:
    """PSI per column of `reference`, judged by `thresholds["score"]` for the score column
    and `thresholds["features"]` for the rest ({warning: x, error: y}; null: not checked).
    `current` is tonight's population as frames that hold the reference's columns between
    them (the feature rows and the scores already computed, so no model runs twice).
    Checks are named `psi_<column>`, after `<model>.` when a model is given."""
    shares: dict[str, list[float]] = {}
    for frame in current:
        edges = {c: ref["edges"] for c, ref in reference.items() if c in frame.columns and c not in shares}
        if edges:
            shares.update(bin_shares(frame, edges))
    missing = [c for c in reference if c not in shares]
    if missing:
        raise ValueError(f"drift: tonight's population lacks the reference columns {missing}")
    outcomes = []
    # Features that grow with the calendar for everyone (tenure) move every night however
    # healthy the population: conf leaves them out.
    calendar = set(thresholds.get("calendar_features") or [])
    for column, ref in reference.items():
        if column in calendar:
            continue
        limits = thresholds["score" if column == score_column else "features"]
        value = psi(ref["shares"], shares[column])
        warning, error = limits.get("warning"), limits.get("error")
        failed_error = error is not None and value >= float(error)
        failed_warning = warning is not None and value >= float(warning)
        severity = "error" if failed_error or (error is not None and not failed_warning) else "warning"
        outcomes.append(ExpectationOutcome(
            suite="drift", check=f"{model + '.' if model else ''}psi_{column}",
            expectation=f"population_stability_index({column}) < {error if severity == 'error' else warning}",
            severity=severity, success=not (failed_error or failed_warning),
            observed=f"PSI {value:.4f}", samples=[]))
    return outcomes
