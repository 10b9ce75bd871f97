"""Influential factors: each person's exact TreeSHAP contributions to a propensity score.

A gradient-boosted classifier's log-odds is a sum of trees. Path-dependent TreeSHAP
(Lundberg et al., 2020) gives every feature its Shapley value for that sum, where a
feature left out of a coalition is averaged over the training cover of the branches it
splits. For one leaf, that game is a product over the distinct features on the leaf's
path: feature j contributes its "one" factor o_j (1 when this person satisfies every
split on j along the path, else 0) when present and its "zero" factor z_j (the share of
training cover that followed the path's splits on j) when absent. The Shapley value of
feature i in such a game is

    leaf * (o_i - z_i) * sum_k e_k * k! (d - k - 1)! / d!

where d is the number of distinct features on the path and e_k the k-th coefficient of
prod_{j != i} (z_j + o_j t). Summed over leaves and trees this is exact: the base value
(every z) plus a person's contributions equals the model's log-odds for that person.
Paths are at most max_depth long, so a leaf's game has at most 2^max_depth outcomes (which
of its features a person follows): its Shapley values are tabulated once, when the model is
read, and each person's are looked up. It runs in Spark over batches of rows (numpy and
Arrow, no Python loop per person).

A logistic regression on standardised inputs (the baseline, when it wins its holdout) is
explained exactly too: its log-odds is the intercept plus, per input, the coefficient
times the standardised value, and with independent inputs that term is the input's
Shapley value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import factorial
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
from pyspark.ml import PipelineModel
from pyspark.ml.classification import GBTClassificationModel, LogisticRegressionModel
from pyspark.ml.feature import StandardScalerModel, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import types as T

FACTOR_TYPE = T.StructType([
    T.StructField("feature", T.StringType()),
    T.StructField("value", T.DoubleType()),
    T.StructField("contribution", T.DoubleType()),   # log-odds added to the base value
    T.StructField("direction", T.StringType()),      # raises / lowers
    T.StructField("importance", T.StringType()),     # high / medium / low
])
FACTORS_TYPE = T.ArrayType(FACTOR_TYPE)


@dataclass(frozen=True)
class LeafPath:
    """One leaf: its weighted value on the log-odds scale and, per distinct feature on the
    path to it, the splits it takes (threshold, goes left) and the cover share of those splits.
    `shapley` holds each feature's contribution for each pattern of the features a row
    follows (`leaf_shapley_values`): a leaf has at most 2^max_depth patterns, whatever the rows."""
    value: float
    features: tuple[int, ...]
    splits: tuple[tuple[tuple[float, bool], ...], ...]
    zero: tuple[float, ...]
    shapley: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class TreeEnsemble:
    inputs: tuple[str, ...]
    leaves: tuple[LeafPath, ...]

    @property
    def base_value(self) -> float:
        """Expected log-odds over the training cover: the score before any factor."""
        return float(sum(leaf.value * float(np.prod(leaf.zero)) for leaf in self.leaves))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return contributions(self, x)


@dataclass(frozen=True)
class LinearTerms:
    """A logistic regression on standardised inputs: log-odds = intercept + sum of
    weight * (value - mean) / std over the inputs (an input with no spread adds nothing)."""
    inputs: tuple[str, ...]
    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray
    intercept: float

    @property
    def base_value(self) -> float:
        return self.intercept

    def contributions(self, x: np.ndarray) -> np.ndarray:
        scale = np.divide(self.weights, self.stds, out=np.zeros_like(self.weights), where=self.stds > 0)
        return (x - self.means) * scale


Explainer = TreeEnsemble | LinearTerms


def explainer(model: PipelineModel) -> Explainer | None:
    """How a champion's scores break into factors, when they do exactly: a VectorAssembler
    straight into gradient-boosted trees (the trees split the very values the person has),
    or into a standardising scaler and a logistic regression. None for other models."""
    stages = model.stages
    if not stages or not isinstance(stages[0], VectorAssembler):
        return None
    if len(stages) == 2 and isinstance(stages[1], GBTClassificationModel):
        return tree_ensemble(model)
    if len(stages) == 3 and isinstance(stages[1], StandardScalerModel) and isinstance(stages[2],
                                                                                      LogisticRegressionModel):
        scaler, regression = stages[1], stages[2]
        weights = regression.coefficients.toArray()
        if regression.numClasses != 2 or len(weights) != len(stages[0].getInputCols()):
            return None
        width = len(weights)
        means = scaler.mean.toArray() if scaler.getWithMean() else np.zeros(width)
        stds = scaler.std.toArray() if scaler.getWithStd() else np.ones(width)
        return LinearTerms(inputs=tuple(stages[0].getInputCols()), weights=weights, means=means, stds=stds,
                           intercept=float(regression.intercept))
    return None


def tree_ensemble(model: PipelineModel) -> TreeEnsemble:
    """The leaves of a fitted VectorAssembler + GBTClassifier pipeline, read from the JVM
    model once on the driver (a few thousand nodes at most)."""
    assembler, gbt = model.stages[0], model.stages[-1]
    inputs = tuple(assembler.getInputCols())
    leaves: list[LeafPath] = []
    # Spark's GBT classifier: P(1) = 1 / (1 + exp(-2 * margin)), margin = sum(weight * tree);
    # scaling leaves by 2 * weight puts every contribution on the log-odds scale.
    for weight, tree in zip(gbt.treeWeights, gbt.trees, strict=True):
        _walk(tree._java_obj.rootNode(), 2.0 * float(weight), [], leaves)
    return TreeEnsemble(inputs=inputs, leaves=tuple(leaves))


def _walk(node, scale: float, path: list[tuple[int, float, bool, float]], leaves: list[LeafPath]) -> None:
    if node.getClass().getSimpleName() == "LeafNode":
        leaves.append(_leaf(scale * float(node.prediction()), path))
        return
    split = node.split()
    if split.getClass().getSimpleName() != "ContinuousSplit":
        raise ValueError("factors need continuous splits; the model has a categorical one")
    feature, threshold = int(split.featureIndex()), float(split.threshold())
    cover = float(node.impurityStats().count())
    for child, goes_left in ((node.leftChild(), True), (node.rightChild(), False)):
        share = float(child.impurityStats().count()) / cover if cover > 0 else 0.5
        _walk(child, scale, path + [(feature, threshold, goes_left, share)], leaves)


def _leaf(value: float, path: list[tuple[int, float, bool, float]]) -> LeafPath:
    features: list[int] = []
    splits: dict[int, list[tuple[float, bool]]] = {}
    zero: dict[int, float] = {}
    for feature, threshold, goes_left, share in path:
        if feature not in splits:
            features.append(feature)
            splits[feature], zero[feature] = [], 1.0
        splits[feature].append((threshold, goes_left))
        zero[feature] *= share
    zeros = tuple(zero[f] for f in features)
    return LeafPath(value=value, features=tuple(features), splits=tuple(tuple(splits[f]) for f in features),
                    zero=zeros, shapley=leaf_shapley_values(value, zeros))


def _shapley_weights(d: int) -> list[float]:
    return [factorial(k) * factorial(d - k - 1) / factorial(d) for k in range(d)]


def leaf_shapley_values(value: float, zero: Sequence[float]) -> np.ndarray:
    """(2^d, d): feature i's Shapley value in one leaf's game (module docstring) for each
    pattern of the d features on its path a row can follow; bit j of the pattern's index
    is set when the row satisfies every split on the j-th feature."""
    d = len(zero)
    ones = ((np.arange(1 << d)[:, None] >> np.arange(d)) & 1).astype(float)
    weights = _shapley_weights(d)
    table = np.zeros((1 << d, d))
    for i in range(d):
        coefficients = [np.ones(1 << d)]
        for j in range(d):
            if j == i:
                continue
            z, o = zero[j], ones[:, j]
            coefficients = ([coefficients[0] * z]
                            + [coefficients[k] * z + coefficients[k - 1] * o for k in range(1, len(coefficients))]
                            + [coefficients[-1] * o])
        weighted = sum(c * w for c, w in zip(coefficients, weights, strict=True))
        table[:, i] = value * (ones[:, i] - zero[i]) * weighted
    return table


def contributions(ensemble: TreeEnsemble, x: np.ndarray) -> np.ndarray:
    """Per row of `x` (rows x inputs), each input's contribution to the log-odds: per leaf,
    the row's pattern of followed features picks its values from the leaf's table."""
    # Column-major: every operation below reads or adds one input's column.
    x = np.asfortranarray(x, dtype=float)
    phi = np.zeros(x.shape, dtype=float, order="F")
    for leaf in ensemble.leaves:
        if not leaf.features:
            continue
        pattern = np.zeros(x.shape[0], dtype=np.intp)
        for bit, (feature, splits) in enumerate(zip(leaf.features, leaf.splits, strict=True)):
            follows = np.ones(x.shape[0], dtype=bool)
            for threshold, goes_left in splits:
                follows &= (x[:, feature] <= threshold) if goes_left else (x[:, feature] > threshold)
            pattern |= follows.astype(np.intp) << bit
        for i, feature in enumerate(leaf.features):
            phi[:, feature] += leaf.shapley[:, i].take(pattern)
    return phi


def importance_label(contribution: np.ndarray, high_from: float, medium_from: float) -> np.ndarray:
    size = np.abs(contribution)
    return np.where(size >= high_from, "high", np.where(size >= medium_from, "medium", "low"))


def top_factor_arrays(ensemble: Explainer, x: np.ndarray, top_n: int, high_from: float,
                      medium_from: float) -> tuple[np.ndarray, ...]:
    """Per row, the `top_n` inputs with the largest absolute contributions, largest first,
    as (rows x top_n) arrays: input index, contribution, the input's value, importance."""
    phi = ensemble.contributions(x)
    order = np.argsort(-np.abs(phi), axis=1, kind="stable")[:, :top_n]
    rows = np.arange(x.shape[0])[:, None]
    chosen, values = phi[rows, order], x[rows, order]
    return order, chosen, values, importance_label(chosen, high_from, medium_from)


def factor_lists(ensemble: Explainer, x: np.ndarray, top_n: int, high_from: float, medium_from: float) -> pa.Array:
    """Per row, its top factors as an Arrow list of FACTOR_TYPE structs (feature, value,
    contribution, direction, importance), built a column at a time (no loop over rows)."""
    order, chosen, values, labels = top_factor_arrays(ensemble, x, top_n, high_from, medium_from)
    rows, width = order.shape
    contribution = chosen.ravel()
    factors = pa.StructArray.from_arrays(
        [pa.array(np.asarray(ensemble.inputs, dtype=object)[order.ravel()], pa.string()),
         pa.array(values.ravel(), pa.float64()), pa.array(contribution, pa.float64()),
         pa.array(np.where(contribution >= 0, "raises", "lowers").astype(object), pa.string()),
         pa.array(labels.ravel().astype(object), pa.string())],
        names=FACTOR_TYPE.fieldNames())
    return pa.ListArray.from_arrays(pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32)), factors)


def top_factors(ensemble: Explainer, x: np.ndarray, top_n: int, high_from: float,
                medium_from: float) -> list[list[dict]]:
    """`factor_lists` as Python: a list of factor dicts per row."""
    return factor_lists(ensemble, x, top_n, high_from, medium_from).to_pylist()


def with_factors(ensemble: Explainer, settings: Mapping, keep: Sequence[str],
                 output: str = "factors") -> Callable[[DataFrame], DataFrame]:
    """A frame with `keep` columns and every model input -> `keep` plus `output`, the
    person's top factors (settings: top_n, importance_log_odds.high / .medium)."""
    top_n = int(settings["top_n"])
    high_from = float(settings["importance_log_odds"]["high"])
    medium_from = float(settings["importance_log_odds"]["medium"])
    if top_n < 1 or not 0 <= medium_from <= high_from:
        raise ValueError(f"scoring.factors needs top_n >= 1 and 0 <= medium <= high, got {dict(settings)}")
    inputs = list(ensemble.inputs)

    def _batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            # A null input becomes NaN, which satisfies no split.
            x = np.column_stack([batch.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
                                 for name in inputs]) if batch.num_rows else np.zeros((0, len(inputs)))
            yield pa.RecordBatch.from_arrays(
                [batch.column(name) for name in keep] + [factor_lists(ensemble, x, top_n, high_from, medium_from)],
                names=[*keep, output])

    def _apply(df: DataFrame) -> DataFrame:
        schema = T.StructType([df.schema[name] for name in keep] + [T.StructField(output, FACTORS_TYPE)])
        return df.select(*keep, *[c for c in inputs if c not in keep]).mapInArrow(_batches, schema)
    return _apply
