import pytest

from pipelines.core.config import load_config
from pipelines.scoring.engagement import engagement_score, reference_value

SETTINGS = load_config("local").get("engagement")
WINDOWS = [7, 30, 90, 365]
NONE = {"page_views": 0.0, "product_views": 0.0, "cart_adds": 0.0, "purchases": 0.0}


def _features(spark, rows):
    columns = "person_id string, days_since_last_event double, page_views_30d double, product_views_30d double, " \
              "cart_adds_30d double, purchases_30d double"
    return spark.createDataFrame(rows, columns)


def test_the_formula_by_hand():
    # Today, no interactions: recency 1, activity 0 -> 50. One half-life ago, 20 weighted
    # interactions (1 - 1/e = 0.632): 100 * (0.5 * 0.5 + 0.5 * 0.632) = 56.6 -> 57.
    assert reference_value(0, NONE, SETTINGS) == 50
    assert reference_value(14, {**NONE, "page_views": 5.0, "purchases": 3.0}, SETTINGS) == 57
    assert reference_value(365, NONE, SETTINGS) == 0


def test_spark_gives_the_documented_values_and_orders_people_sensibly(spark):
    rows = [("today_idle", 0.0, 0.0, 0.0, 0.0, 0.0), ("fortnight_busy", 14.0, 5.0, 0.0, 0.0, 3.0),
            ("gone", 365.0, 0.0, 0.0, 0.0, 0.0), ("fan", 1.0, 40.0, 20.0, 5.0, 4.0),
            ("browser", 1.0, 40.0, 0.0, 0.0, 0.0)]
    got = {r["person_id"]: r["engagement_score"]
           for r in _features(spark, rows).transform(engagement_score(SETTINGS, WINDOWS)).collect()}
    assert (got["today_idle"], got["fortnight_busy"], got["gone"]) == (50, 57, 0)
    expected_fan = reference_value(1, {"page_views": 40, "product_views": 20, "cart_adds": 5, "purchases": 4}, SETTINGS)
    assert got["fan"] == expected_fan and 95 <= got["fan"] <= 100
    assert got["fan"] > got["browser"] > got["today_idle"] > got["gone"]


@pytest.mark.parametrize("change, message", [
    ({"window_days": 14}, "window_days 14 is not one of features.windows_days"),
    ({"interaction_weights": {"logins": 1}}, "names ['logins']"),
    ({"saturation": 0}, "saturation > 0"),
    ({"recency_weight": 1.5}, "recency_weight in [0, 1]"),
])
def test_bad_settings_are_refused_with_the_setting_named(change, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        engagement_score({**SETTINGS, **change}, WINDOWS)
