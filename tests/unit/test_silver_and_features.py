from datetime import date, datetime

import pytest
from pyspark.sql import types as T

from pipelines.features.build import feature_columns, person_features, with_labels
from pipelines.ingest.silver import flatten_events
from pipelines.xdm.schema import EXPERIENCE_EVENT

AS_OF = date(2026, 3, 1)
SILVER = T.StructType([
    T.StructField("person_id", T.StringType()), T.StructField("event_date", T.DateType()),
    T.StructField("is_purchase", T.BooleanType()), T.StructField("revenue", T.DoubleType()),
    T.StructField("product_views", T.DoubleType()), T.StructField("cart_adds", T.DoubleType()),
    T.StructField("page_views", T.DoubleType()), T.StructField("categories", T.ArrayType(T.StringType())),
])


def _event(pid, day, purchase=False, revenue=0.0, views=0.0, cats=()):
    return (pid, day, purchase, revenue, views, 0.0, 0.0 if purchase or views else 1.0, list(cats))


def test_purchase_revenue_comes_from_the_order_else_the_items(spark):
    bronze = T.StructType(EXPERIENCE_EVENT.fields + [
        T.StructField("person_id", T.StringType()), T.StructField("event_date", T.DateType())])
    bronze = T.StructType([f if f.name != "timestamp" else T.StructField("timestamp", T.TimestampType())
                           for f in bronze.fields])
    item = {"SKU": "s", "name": "n", "quantity": 1, "priceTotal": 4.0, "currencyCode": "USD",
            "productCategories": [{"categoryID": "C1", "name": "Outdoor", "hierarchy": None}]}
    rows = [
        {"_id": "o", "timestamp": datetime(2026, 2, 1), "eventType": "commerce.purchases", "person_id": "p",
         "event_date": date(2026, 2, 1), "commerce": {"order": {"priceTotal": 9.5, "currencyCode": "USD",
                                                                 "purchaseID": "x"}},
         "productListItems": [item, item]},
        {"_id": "i", "timestamp": datetime(2026, 2, 1), "eventType": "commerce.purchases", "person_id": "p",
         "event_date": date(2026, 2, 1), "productListItems": [item, item]},
        {"_id": "v", "timestamp": datetime(2026, 2, 1), "eventType": "commerce.productViews", "person_id": "p",
         "event_date": date(2026, 2, 1), "productListItems": [item]},
    ]
    flat = {r["event_id"]: r for r in spark.createDataFrame(rows, bronze).transform(flatten_events).collect()}
    assert (flat["o"]["revenue"], flat["i"]["revenue"], flat["v"]["revenue"]) == (9.5, 8.0, 0.0)
    assert flat["v"]["product_views"] == 1.0 and not flat["v"]["is_purchase"]
    assert flat["o"]["categories"] == ["Outdoor"]


def test_features_use_only_events_before_the_as_of_date(spark):
    events = spark.createDataFrame([
        _event("p", date(2026, 2, 28), purchase=True, revenue=10.0, cats=["A"]),
        _event("p", date(2026, 2, 20), views=2.0, cats=["B"]),
        _event("p", date(2026, 1, 1), purchase=True, revenue=30.0, cats=["A"]),
        _event("p", AS_OF, purchase=True, revenue=999.0, cats=["Z"]),      # on the as-of date: unseen
    ], SILVER)
    row = events.transform(person_features(AS_OF, [7, 30], 365)).first()
    assert row["days_since_last_event"] == 1 and row["days_since_last_purchase"] == 1
    assert row["tenure_days"] == 59
    assert (row["purchases_7d"], row["purchases_30d"], row["lifetime_purchases"]) == (1, 1, 2)
    assert (row["revenue_7d"], row["lifetime_revenue"], row["avg_order_value"]) == (10.0, 40.0, 20.0)
    assert row["product_views_30d"] == 2 and row["product_views_7d"] == 0
    assert row["distinct_categories"] == 2
    assert row["as_of_date"] == AS_OF


def test_people_outside_the_lookback_get_no_row_and_non_buyers_get_the_sentinel(spark):
    events = spark.createDataFrame([
        _event("old", date(2025, 1, 1)),
        _event("browser", date(2026, 2, 1), views=1.0),
        # Bought once, before the look-back, and came back since: as if they had never bought.
        _event("returning", date(2025, 1, 1), purchase=True, revenue=20.0),
        _event("returning", date(2026, 2, 1), views=1.0),
    ], SILVER)
    rows = {r["person_id"]: r for r in events.transform(person_features(AS_OF, [7], 90)).collect()}
    assert set(rows) == {"browser", "returning"}
    assert rows["browser"]["days_since_last_purchase"] == 91
    assert rows["browser"]["avg_order_value"] == 0.0
    assert rows["returning"]["days_since_last_purchase"] == 91
    assert (rows["returning"]["lifetime_purchases"], rows["returning"]["tenure_days"]) == (1, 424)


def test_labels_cover_the_horizon_starting_on_the_as_of_date(spark):
    events = spark.createDataFrame([
        _event("buys-on-day-0", date(2026, 2, 1)), _event("buys-on-day-0", AS_OF, purchase=True),
        _event("buys-after", date(2026, 2, 1)), _event("buys-after", date(2026, 3, 31), purchase=True),
        _event("buys-before", date(2026, 2, 1), purchase=True),
    ], SILVER)
    features = events.transform(person_features(AS_OF, [7], 365))
    labels = {r["person_id"]: r["label"] for r in features.transform(with_labels(events, AS_OF, 30)).collect()}
    assert labels == {"buys-on-day-0": 1.0, "buys-after": 0.0, "buys-before": 0.0}


def test_feature_columns_are_ordered_and_windows_validated():
    assert feature_columns([30, 7])[:2] == ["days_since_last_event", "days_since_last_purchase"]
    assert feature_columns([30, 7]).index("purchases_7d") < feature_columns([30, 7]).index("purchases_30d")
    with pytest.raises(ValueError, match="windows"):
        person_features(AS_OF, [0], 30)


def test_silver_keeps_skus_removals_and_each_way_of_naming_content(spark):
    bronze = T.StructType(EXPERIENCE_EVENT.fields + [
        T.StructField("person_id", T.StringType()), T.StructField("event_date", T.DateType())])
    bronze = T.StructType([f if f.name != "timestamp" else T.StructField("timestamp", T.TimestampType())
                           for f in bronze.fields])
    day = {"timestamp": datetime(2026, 2, 1), "person_id": "p", "event_date": date(2026, 2, 1)}
    rows = [
        {"_id": "r", "eventType": "commerce.productListRemovals", **day,
         "productListItems": [{"SKU": "A-1"}, {"SKU": " A-1 "}, {"SKU": ""}, {"SKU": "B-2"}, {"name": "no sku"}]},
        {"_id": "w", "eventType": "web.webpagedetails.pageViews", **day,
         "web": {"webPageDetails": {"name": "Tent guide", "siteSection": "Guides",
                                    "URL": "https://shop.example.com/guides/tents?ref=x",
                                    "pageViews": {"value": 1.0}}}},
        {"_id": "s", "eventType": "web.webpagedetails.pageViews", **day,
         "web": {"webPageDetails": {"primarySiteSection": "Help", "URL": "/help", "pageViews": {"value": 1.0}}}},
        {"_id": "h", "eventType": "web.webpagedetails.pageViews", **day,
         "web": {"webPageDetails": {"name": " ", "URL": "https://shop.example.com/", "pageViews": {"value": 1.0}}}},
    ]
    flat = {r["event_id"]: r for r in spark.createDataFrame(rows, bronze).transform(flatten_events).collect()}
    assert flat["r"]["skus"] == ["A-1", "B-2"] and flat["r"]["cart_removals"] == 1.0
    assert (flat["w"]["site_section"], flat["w"]["page_name"], flat["w"]["url_section"]) == \
        ("Guides", "Tent guide", "guides")
    assert (flat["s"]["site_section"], flat["s"]["url_section"]) == ("Help", "help")
    assert (flat["h"]["site_section"], flat["h"]["page_name"], flat["h"]["url_section"]) == (None, None, None)
    assert flat["w"]["skus"] == [] and flat["w"]["cart_removals"] == 0.0
