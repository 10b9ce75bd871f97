from datetime import date

import pytest

from pipelines.core.config import load_config
from pipelines.core.errors import BadInputError
from pipelines.models.specs import propensity_specs

AS_OF = date(2026, 3, 1)


def test_conf_declares_convert_and_churn_in_order():
    specs = propensity_specs(load_config("local"))
    assert [(s.key, s.target, s.prefix) for s in specs] == [("convert_propensity", "purchase", "convert"),
                                                           ("churn_propensity", "churn", "churn")]
    assert [s.key for s in propensity_specs(load_config("local"), "churn_propensity")] == ["churn_propensity"]
    assert propensity_specs(load_config("local"), "lifetime_value") == [], "trained by its own module"


@pytest.mark.parametrize("overrides,message", [
    ([], "--model 'nope' is not a model; known: convert_propensity, churn_propensity, lifetime_value"),
    (["models.churn_propensity.target=attrition"], "models.churn_propensity.target must be one of"),
    (["models.churn_propensity.eligible_purchased_within_days=null"], "is required for a churn model"),
    (["models.churn_propensity.profile_prefix=convert"], "profile_prefix must differ"),
    (["models.propensity=[convert_propensity, ltv]"], "models.ltv is not configured"),
])
def test_a_bad_model_declaration_is_bad_input(overrides, message):
    cfg = load_config("local", overrides=overrides)
    with pytest.raises(BadInputError, match=message.replace("(", r"\(")):
        propensity_specs(cfg, "nope" if not overrides else None)


def _events(spark, rows):
    return spark.createDataFrame(rows, "person_id string, event_date date, is_purchase boolean")


def _features(spark, rows):
    return spark.createDataFrame(rows, "person_id string, days_since_last_purchase double")


def test_churn_is_no_purchase_in_the_horizon_among_recent_buyers_only(spark):
    churn = propensity_specs(load_config("local"), "churn_propensity")[0]
    horizon_end = date.fromordinal(AS_OF.toordinal() + churn.horizon_days)
    events = _events(spark, [
        ("stays", date(2026, 3, 20), True),          # bought in the horizon: not churned
        ("leaves", date(2026, 3, 20), False),        # only browsed: churned
        ("late", horizon_end, True),                 # bought the day after the horizon: churned
        ("early", date(2026, 2, 28), True),          # bought the day before as-of: not in the horizon
    ])
    features = _features(spark, [("stays", 10.0), ("leaves", 30.0), ("late", 5.0), ("early", 1.0),
                                 ("lapsed", float(churn.purchased_within_days + 1))])
    labels = {r["person_id"]: r["label"] for r in features.transform(churn.labels(events, AS_OF)).collect()}
    # "lapsed" bought too long ago to count as an active customer: not trained on, not scored.
    assert labels == {"stays": 0.0, "leaves": 1.0, "late": 1.0, "early": 1.0}


def test_convert_labels_everyone_with_a_feature_row(spark):
    convert = propensity_specs(load_config("local"), "convert_propensity")[0]
    events = _events(spark, [("buyer", date(2026, 3, 5), True), ("viewer", date(2026, 3, 5), False)])
    features = _features(spark, [("buyer", 400.0), ("viewer", 3.0), ("new", 366.0)])
    labels = {r["person_id"]: r["label"] for r in features.transform(convert.labels(events, AS_OF)).collect()}
    assert labels == {"buyer": 1.0, "viewer": 0.0, "new": 0.0}
