"""Custom models: how a definition is read and checked, what its label and extra features
mean on events, and the programmatic template's interface."""

from __future__ import annotations

from datetime import date

import pyspark.sql.functions as F
import pytest

from pipelines.core.config import load_config
from pipelines.core.errors import BadInputError
from pipelines.features.build import feature_columns
from pipelines.models import custom
from pipelines.models.specs import all_specs, model_names, propensity_specs, unlisted_models

AS_OF = date(2026, 3, 1)
WINDOWS = [7, 30, 90, 365]
FEATURES = feature_columns(WINDOWS)
EVENTS_SCHEMA = ("person_id string, event_date date, event_type string, is_purchase boolean, revenue double, "
                 "categories array<string>")
GOOD = {"kind": "classifier", "registered_name": "outdoor_buyer", "profile_prefix": "outdoor", "horizon_days": 30,
        "label": "count_if(is_purchase AND array_contains(categories, 'Outdoor')) > 0",
        "extra_features": {"outdoor_views_90d": "count_if(array_contains(categories, 'Outdoor') AND days_ago <= 90)"},
        "estimator": "gbt", "params": {"max_iter": 5, "max_depth": 2}, "training_snapshots": 2, "cadence_days": 30,
        "seed": 3}


def _cfg(tmp_path, models: dict, listed: list[str] | None = None):
    import yaml
    overlay = tmp_path / "models.yaml"
    overlay.write_text(yaml.safe_dump({"models": {"custom": listed or list(models), **models}}))
    return load_config("local", [str(overlay)])


def test_a_declared_model_joins_the_built_ins_in_training_scoring_and_publishing(tmp_path):
    cfg = _cfg(tmp_path, {"outdoor_buyer": GOOD})
    specs = propensity_specs(cfg)
    assert [s.key for s in specs] == ["convert_propensity", "churn_propensity", "outdoor_buyer"]
    spec = specs[-1]
    assert (spec.target, spec.prefix, spec.settings_key, spec.is_custom) == ("custom", "outdoor", "params", True)
    assert spec.inputs(WINDOWS) == FEATURES + ["outdoor_views_90d"]
    assert model_names(cfg)[-1] == "outdoor_buyer"
    assert [s.key for s in propensity_specs(cfg, "outdoor_buyer")] == ["outdoor_buyer"]


@pytest.mark.parametrize("change,message", [
    ({"label": None}, "models.m.label is required"),
    ({"kind": "ranker"}, "models.m.kind must be one of classifier, regressor, got 'ranker'"),
    ({"kind": "regressor", "estimator": "logistic_regression"},
     "models.m.estimator must be one of gbt, random_forest, linear_regression for a regressor"),
    ({"entry_point": "pkg.mod:fit"}, "models.m needs exactly one of estimator"),
    ({"estimator": "xgboost"}, "models.m.estimator must be one of gbt, random_forest, logistic_regression for a "
                               "classifier, got 'xgboost'"),
    ({"estimator": None, "entry_point": "not a path"}, "models.m.entry_point must look like package.module:function"),
    ({"params": {"max_iter": 5, "depth": 2}}, "models.m.params: depth not a setting of GBTClassifier"),
    ({"features": ["tenure_days", "purchases_14d"]}, "models.m.features: unknown feature purchases_14d; known:"),
    ({"extra_features": {"tenure_days": "count(1)"}}, "'tenure_days' must be a lower_snake_case name that is not"),
    ({"horizon_days": 0}, "models.m.horizon_days must be a whole number >= 1, got 0"),
])
def test_a_bad_definition_names_its_problem_without_spark(change, message):
    definition, problems = custom.parse("m", {**GOOD, **change}, FEATURES)
    assert definition is None
    assert any(message in p for p in problems), problems


def test_every_problem_is_reported_and_names_may_not_clash(tmp_path):
    broken = {**GOOD, "estimator": "xgboost", "features": ["nope"]}
    clash = {**GOOD, "registered_name": "convert_propensity", "profile_prefix": "ltv"}
    cfg = _cfg(tmp_path, {"broken": broken, "clash": clash}, ["broken", "clash", "convert_propensity"])
    _, problems = all_specs(cfg)
    assert ("models.broken.estimator must be one of gbt, random_forest, logistic_regression for a classifier, "
            "got 'xgboost'") in problems
    assert any(p.startswith("models.broken.features: unknown feature nope") for p in problems)
    assert "models.custom names 'convert_propensity', a built-in model" in problems
    assert "models.clash.profile_prefix 'ltv' is taken by lifetime_value" in problems
    assert "models: registered_name must differ between models; repeated: convert_propensity" in problems
    with pytest.raises(BadInputError, match="models.broken.estimator must be one of"):
        propensity_specs(cfg)


def _events(spark, rows):
    """silver/events rows, each with an `event_id` of its own, as silver gives them."""
    with_ids = [(f"e{i}", *row) for i, row in enumerate(rows)]
    return spark.createDataFrame(with_ids, "event_id string, " + EVENTS_SCHEMA)


def test_the_label_holds_over_the_horizon_events_only_and_eligibility_filters_rows(spark):
    definition, _ = custom.parse("m", {**GOOD, "eligible": "lifetime_purchases > 0"}, FEATURES)
    events = _events(spark, [
        ("in", date(2026, 3, 1), "commerce.purchases", True, 30.0, ["Outdoor"]),       # first day of the horizon
        ("last_day", date(2026, 3, 30), "commerce.purchases", True, 9.0, ["Outdoor", "Home"]),
        ("after", date(2026, 3, 31), "commerce.purchases", True, 9.0, ["Outdoor"]),     # the day after it
        ("before", date(2026, 2, 28), "commerce.purchases", True, 9.0, ["Outdoor"]),
        ("viewer", date(2026, 3, 5), "commerce.productViews", False, 0.0, ["Outdoor"]),
        ("other", date(2026, 3, 5), "commerce.purchases", True, 50.0, ["Home"]),
    ])
    people = ["in", "last_day", "after", "before", "viewer", "other", "quiet", "never_bought"]
    features = spark.createDataFrame([(p, 0.0 if p == "never_bought" else 1.0) for p in people],
                                     "person_id string, lifetime_purchases double")
    labels = {r["person_id"]: r["label"] for r in features.transform(definition.labels(events, AS_OF, 30)).collect()}
    assert labels == {"in": 1.0, "last_day": 1.0, "after": 0.0, "before": 0.0, "viewer": 0.0, "other": 0.0,
                      "quiet": 0.0}, "never_bought is not eligible; quiet has no events and is a negative"


def test_a_regressors_label_is_the_expression_s_value_and_zero_without_events(spark):
    definition, problems = custom.parse("m", {**GOOD, "kind": "regressor", "label": "sum(revenue)"}, FEATURES)
    assert problems == [] and definition.is_regressor
    events = _events(spark, [
        ("spender", date(2026, 3, 2), "commerce.purchases", True, 30.0, ["Home"]),
        ("spender", date(2026, 3, 20), "commerce.purchases", True, 12.5, ["Home"]),
        ("browser", date(2026, 3, 2), "commerce.productViews", False, 0.0, ["Home"]),
    ])
    features = spark.createDataFrame([("spender",), ("browser",), ("quiet",)], "person_id string")
    labels = {r["person_id"]: r["label"] for r in features.transform(definition.labels(events, AS_OF, 30)).collect()}
    assert labels == {"spender": 42.5, "browser": 0.0, "quiet": 0.0}
    found = custom.analyse(custom.parse("m", {**GOOD, "kind": "regressor"}, FEATURES)[0], events, WINDOWS,
                           GOOD["params"], 3)
    assert found == ["models.m.label must be a number for a regressor, but it gives boolean"]


def test_extra_features_see_only_events_before_the_as_of_date_within_the_look_back(spark):
    definition, _ = custom.parse("m", GOOD, FEATURES)
    events = _events(spark, [
        ("a", date(2026, 2, 28), "commerce.productViews", False, 0.0, ["Outdoor"]),    # days_ago 1
        ("a", date(2025, 12, 1), "commerce.productViews", False, 0.0, ["Outdoor"]),    # days_ago 90
        ("a", date(2025, 11, 30), "commerce.productViews", False, 0.0, ["Outdoor"]),   # 91: outside 90
        ("a", date(2026, 3, 1), "commerce.productViews", False, 0.0, ["Outdoor"]),     # the as-of date: future
        ("b", date(2026, 2, 1), "commerce.productViews", False, 0.0, ["Home"]),
    ])
    features = spark.createDataFrame([("a",), ("b",), ("c",)], "person_id string")
    out = {r["person_id"]: r["outdoor_views_90d"]
           for r in features.transform(definition.with_extra_features(events, AS_OF, 365)).collect()}
    assert out == {"a": 2.0, "b": 0.0, "c": 0.0}


def test_models_sharing_a_feature_name_each_get_their_own_values_from_one_pass(spark):
    outdoor, _ = custom.parse("outdoor", GOOD, FEATURES)
    home, _ = custom.parse("home", {**GOOD, "extra_features": {
        "outdoor_views_90d": "count_if(array_contains(categories, 'Home'))"}}, FEATURES)
    events = _events(spark, [
        ("a", date(2026, 2, 28), "commerce.productViews", False, 0.0, ["Outdoor"]),
        ("a", date(2026, 2, 27), "commerce.productViews", False, 0.0, ["Home"]),
        ("a", date(2026, 2, 26), "commerce.productViews", False, 0.0, ["Home"]),
        ("b", date(2026, 3, 1), "commerce.productViews", False, 0.0, ["Home"]),    # the as-of date: future
    ])
    values = custom.extra_feature_values([outdoor, home], events, AS_OF, 365)
    features = spark.createDataFrame([("a",), ("b",)], "person_id string")
    seen = {key: {r["person_id"]: r["outdoor_views_90d"] for r in features.transform(d.joined_with(values)).collect()}
            for key, d in (("outdoor", outdoor), ("home", home))}
    assert seen == {"outdoor": {"a": 1.0, "b": 0.0}, "home": {"a": 2.0, "b": 0.0}}


@pytest.mark.parametrize("change,message", [
    ({"label": "count_if(is_purchase AND category = 'Outdoor') > 0"}, "models.m.label: [UNRESOLVED_COLUMN"),
    ({"label": "sum(revenue)"}, "models.m.label must be true or false for a classifier, but it gives double"),
    ({"label": "revenue > 200"}, "models.m.label: "),
    ({"eligible": "tenure_days"}, "models.m.eligible must be a condition (true or false) on feature columns"),
    ({"eligible": "tenure > 3"}, "models.m.eligible: [UNRESOLVED_COLUMN"),
    ({"extra_features": {"x": "collect_list(event_type)"}}, "models.m.extra_features.x must be a number"),
    ({"params": {"max_iter": "many"}}, "models.m.params: "),
    ({"estimator": None, "entry_point": "pipelines.models.nowhere:fit"}, "models.m.entry_point "
                                                                          "pipelines.models.nowhere:fit: No module"),
])
def test_spark_finds_what_is_wrong_with_an_expression_estimator_or_entry_point(spark, change, message):
    model = {**GOOD, **change}
    definition, problems = custom.parse("m", model, FEATURES)
    assert problems == []
    events = _events(spark, [])
    found = custom.analyse(definition, events, WINDOWS, model.get("params") or {}, 3)
    assert any(p.startswith(message) for p in found), found


def test_a_sound_definition_passes_and_a_label_nobody_meets_is_caught(spark):
    events = _events(spark, [("a", date(2026, 2, 1), "commerce.purchases", True, 20.0, ["Home"])])
    sound, _ = custom.parse("m", {**GOOD, "label": "sum(revenue) > 10"}, FEATURES)
    assert custom.analyse(sound, events, WINDOWS, GOOD["params"], 3) == []
    outdoor, _ = custom.parse("outdoor", GOOD, FEATURES)
    spend, _ = custom.parse("spend", {**GOOD, "kind": "regressor", "label": "sum(revenue)"}, FEATURES)
    none_spent, _ = custom.parse("none_spent", {**GOOD, "kind": "regressor", "label": "sum(revenue) - 20"}, FEATURES)
    assert custom.labels_never_held([sound, outdoor, spend, none_spent], events) == ["outdoor", "none_spent"], \
        "nobody bought Outdoor gear, and 20 - 20 is 0 for everyone"


def test_the_programmatic_template_learns_a_planted_signal_and_scores_like_a_classifier(spark):
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import vector_to_array

    definition, problems = custom.parse(
        "m", {**GOOD, "estimator": None, "entry_point": "examples.custom_model:fit",
              "params": {"reg_param": 0.0}}, FEATURES)
    assert problems == []
    # One buyer in ten, and buyers visit more: a rare class the weights must not drown.
    rows = [(f"p{i}", float(i % 7 + (20 if i % 10 == 0 else 0)), float(i % 3), 1.0 if i % 10 == 0 else 0.0)
            for i in range(400)]
    frame = spark.createDataFrame(rows, "person_id string, events_30d double, tenure_days double, label double")
    model = definition.fitter(seed=1)(frame, ["events_30d", "tenure_days"], {"reg_param": 0.0})
    scored = model.transform(frame)
    assert {"probability", "rawPrediction"} <= set(scored.columns)
    auc = BinaryClassificationEvaluator(labelCol="label").evaluate(scored)
    assert auc > 0.95
    positives = scored.where(F.col("label") == 1.0).select(F.avg(vector_to_array("probability")[1])).first()[0]
    assert positives > 0.5, "with the classes balanced, the rare positives score as likely"


def test_a_model_defined_but_not_listed_is_named_not_silently_ignored(tmp_path):
    cfg = _cfg(tmp_path, {"outdoor_buyer": GOOD, "forgotten": {**GOOD, "registered_name": "forgotten"}},
               listed=["outdoor_buyer"])
    assert unlisted_models(cfg) == [
        "models.forgotten is defined (kind: classifier) but not listed in models.custom, so it is neither trained "
        "nor scored: list it there, or remove it"]
    assert unlisted_models(_cfg(tmp_path, {"outdoor_buyer": GOOD})) == []
