"""Influential factors: exact TreeSHAP against a brute-force Shapley computation, and
contributions that add up to the model's log-odds for every person, for the trees and for
the logistic baseline."""

from __future__ import annotations

from itertools import combinations
from math import factorial, log

import numpy as np
import pytest
from pyspark.ml import Pipeline
from pyspark.ml.classification import GBTClassifier
from pyspark.ml.feature import StandardScaler, VectorAssembler

from pipelines.models.propensity import baseline_pipeline, positive_probability
from pipelines.scoring.factors import LinearTerms, contributions, explainer, top_factors, tree_ensemble, with_factors

INPUTS = ["visits", "spend", "recency", "noise"]


@pytest.fixture(scope="module")
def fitted(spark):
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, size=(400, len(INPUTS)))
    # A planted rule with an interaction, so paths reuse features and mix them.
    label = ((x[:, 0] > 5) & (x[:, 2] < 6) | (x[:, 1] > 8)).astype(float)
    rows = [(f"p{i}", *map(float, x[i]), float(label[i])) for i in range(len(x))]
    frame = spark.createDataFrame(rows, ["person_id", *INPUTS, "label"])
    model = Pipeline(stages=[VectorAssembler(inputCols=INPUTS, outputCol="features"),
                             GBTClassifier(maxIter=6, maxDepth=3, seed=5, subsamplingRate=0.8)]).fit(frame)
    return model, frame


def _as_dicts(node) -> dict:
    """The JVM tree as nested dicts, read independently of the module under test."""
    if node.getClass().getSimpleName() == "LeafNode":
        return {"value": node.prediction(), "cover": node.impurityStats().count()}
    return {"feature": node.split().featureIndex(), "threshold": node.split().threshold(),
            "cover": node.impurityStats().count(),
            "left": _as_dicts(node.leftChild()), "right": _as_dicts(node.rightChild())}


def _expected(tree: dict, x: np.ndarray, known: set[int]) -> float:
    """Lundberg's EXPVALUE: follow the person where the feature is known, else average by cover."""
    if "feature" not in tree:
        return tree["value"]
    if tree["feature"] in known:
        return _expected(tree["left"] if x[tree["feature"]] <= tree["threshold"] else tree["right"], x, known)
    left, right = tree["left"], tree["right"]
    return (left["cover"] * _expected(left, x, known) + right["cover"] * _expected(right, x, known)) / tree["cover"]


def _brute_force_shapley(trees: list[tuple[float, dict]], x: np.ndarray) -> np.ndarray:
    n = len(x)

    def value(known: set[int]) -> float:
        return sum(2 * weight * _expected(tree, x, known) for weight, tree in trees)

    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            for subset in combinations(others, size):
                weight = factorial(size) * factorial(n - size - 1) / factorial(n)
                phi[i] += weight * (value(set(subset) | {i}) - value(set(subset)))
    return phi


def test_contributions_are_the_shapley_values_of_the_trees(fitted):
    model, frame = fitted
    gbt = model.stages[-1]
    trees = [(w, _as_dicts(t._java_obj.rootNode())) for w, t in zip(gbt.treeWeights, gbt.trees, strict=True)]
    x = np.array(frame.select(*INPUTS).limit(6).collect(), dtype=float)
    exact = contributions(tree_ensemble(model), x)
    for row in range(len(x)):
        np.testing.assert_allclose(exact[row], _brute_force_shapley(trees, x[row]), atol=1e-9)


def test_base_value_plus_contributions_is_the_models_log_odds(fitted):
    model, frame = fitted
    ensemble = tree_ensemble(model)
    scored = model.transform(frame).select(*INPUTS, positive_probability().alias("p")).collect()
    x = np.array([[r[c] for c in INPUTS] for r in scored])
    log_odds = np.array([log(r["p"] / (1 - r["p"])) for r in scored])
    np.testing.assert_allclose(ensemble.base_value + contributions(ensemble, x).sum(axis=1), log_odds, atol=1e-8)


def test_top_factors_rank_by_size_and_name_direction_and_importance(fitted):
    model, frame = fitted
    ensemble = tree_ensemble(model)
    x = np.array(frame.select(*INPUTS).limit(50).collect(), dtype=float)
    phi = contributions(ensemble, x)
    factors = top_factors(ensemble, x, top_n=2, high_from=0.5, medium_from=0.2)
    for row, chosen in enumerate(factors):
        sizes = [abs(f["contribution"]) for f in chosen]
        assert sizes == sorted(sizes, reverse=True) and sizes[0] == pytest.approx(np.abs(phi[row]).max())
        for factor in chosen:
            index = INPUTS.index(factor["feature"])
            assert factor["value"] == x[row, index]
            assert factor["direction"] == ("raises" if factor["contribution"] >= 0 else "lowers")
            size = abs(factor["contribution"])
            assert factor["importance"] == ("high" if size >= 0.5 else "medium" if size >= 0.2 else "low")
    # The planted noise column never leads.
    assert all(chosen[0]["feature"] != "noise" for chosen in factors)


def test_factors_are_computed_in_spark_per_person(fitted):
    model, frame = fitted
    settings = {"top_n": 3, "importance_log_odds": {"high": 0.5, "medium": 0.2}}
    out = frame.transform(with_factors(tree_ensemble(model), settings, keep=["person_id"]))
    assert out.columns == ["person_id", "factors"]
    rows = {r["person_id"]: r["factors"] for r in out.collect()}
    assert len(rows) == frame.count() and all(len(f) == 3 for f in rows.values())
    first = frame.where("person_id = 'p0'").select(*INPUTS).first()
    expected = top_factors(tree_ensemble(model), np.array([list(first)], dtype=float), 3, 0.5, 0.2)[0]
    assert [f.asDict() for f in rows["p0"]] == expected


def test_bad_factor_settings_are_refused(fitted):
    model, _ = fitted
    with pytest.raises(ValueError, match="scoring.factors"):
        with_factors(tree_ensemble(model), {"top_n": 0, "importance_log_odds": {"high": 0.5, "medium": 0.2}},
                     keep=["person_id"])


def test_a_logistic_baselines_factors_add_up_to_its_log_odds(spark, fitted):
    _, frame = fitted
    model = baseline_pipeline(INPUTS).fit(frame)
    terms = explainer(model)
    assert isinstance(terms, LinearTerms) and terms.inputs == tuple(INPUTS)
    rows = model.transform(frame).select(*INPUTS, positive_probability().alias("p")).toPandas()
    x = rows[INPUTS].to_numpy(dtype=float)
    log_odds = np.log(rows["p"] / (1 - rows["p"]))
    np.testing.assert_allclose(terms.base_value + terms.contributions(x).sum(axis=1), log_odds, atol=1e-8)
    factors = top_factors(terms, x[:1], top_n=2, high_from=0.5, medium_from=0.2)[0]
    largest = np.argsort(-np.abs(terms.contributions(x[:1])[0]))[:2]
    assert [f["feature"] for f in factors] == [INPUTS[i] for i in largest]


def test_models_without_exact_factors_have_no_explainer(spark, fitted):
    _, frame = fitted
    scaled_trees = Pipeline(stages=[VectorAssembler(inputCols=INPUTS, outputCol="raw"),
                                    StandardScaler(inputCol="raw", outputCol="features"),
                                    GBTClassifier(maxIter=2, maxDepth=2, seed=5)]).fit(frame)
    assert explainer(scaled_trees) is None
