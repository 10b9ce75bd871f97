"""Tables for each GX suite: a good one, and for every check of the suite a way to break
that check alone. The unit tests run the good tables; tests/matrix runs every break."""

from __future__ import annotations

import copy
from datetime import date, datetime

from pyspark.sql import types as T

from pipelines.core.config import load_config
from pipelines.quality.suites import load_suite, validate
from pipelines.scoring.factors import FACTORS_TYPE

CFG = load_config("local")
SUITE_DIR = CFG.project_path(CFG.get("quality.suite_dir"))
RUN_DATE = date(2026, 6, 1)


def _schema(*fields: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(name, kind) for name, kind in fields])


def row_with(index: int, **changes):
    """Mutation: row `index` gets `changes`."""
    def _apply(rows):
        rows[index].update(changes)
        return rows
    return _apply


def _each(**changes):
    def _apply(rows):
        for row in rows:
            row.update(changes)
        return rows
    return _apply


def _duplicate_first(rows):
    return rows + [copy.deepcopy(rows[0])]


def _no_rows(rows):
    return []


EVENTS = dict(
    schema=_schema(("_id", T.StringType()), ("timestamp", T.TimestampType()), ("eventType", T.StringType()),
                   ("primary_id", T.StringType()), ("order_price_total", T.DoubleType()),
                   ("min_item_price", T.DoubleType()), ("min_item_quantity", T.LongType()),
                   ("unknown_currency_code", T.StringType()), ("unknown_identity_namespace", T.StringType())),
    rows=[
        {"_id": "e1", "timestamp": datetime(2026, 5, 31, 23), "eventType": "commerce.purchases", "primary_id": "p1",
         "order_price_total": 12.5, "min_item_price": 6.0, "min_item_quantity": 1},
        {"_id": "e2", "timestamp": datetime(2026, 5, 1), "eventType": "web.webpagedetails.pageViews",
         "primary_id": "p2"},
    ],
    parameters={"earliest_event_time": datetime(2000, 1, 1), "latest_event_time": datetime(2026, 5, 31, 23, 59, 59),
                "event_types": CFG.get("quality.bronze.event_types")},
    breaks={
        "event_id_present": row_with(1, _id=None),
        "event_id_unique": row_with(1, _id="e1"),
        "timestamp_present": row_with(1, timestamp=None),
        "timestamp_in_range": row_with(0, timestamp=datetime(2026, 6, 1, 0, 0, 1)),
        "event_type_present": row_with(1, eventType=None),
        "event_type_known": row_with(1, eventType="commerce.teleport"),
        "identity_present": row_with(1, primary_id=None),
        "order_total_not_negative": row_with(0, order_price_total=-5.0),
        "item_price_not_negative": row_with(0, min_item_price=-1.0),
        "item_quantity_not_negative": row_with(0, min_item_quantity=-2),
        "currency_code_iso4217": row_with(0, unknown_currency_code="US$"),
        "identity_namespace_known": row_with(0, unknown_identity_namespace="Phone"),
    },
)

PROFILES = dict(
    schema=_schema(("_id", T.StringType()), ("updated_at", T.TimestampType()), ("primary_id", T.StringType()),
                   ("email", T.StringType()), ("birth_year", T.LongType()),
                   ("unknown_identity_namespace", T.StringType())),
    rows=[
        {"_id": "f1", "updated_at": datetime(2026, 5, 2), "primary_id": "c1", "email": "ann@example.com",
         "birth_year": 1980},
        {"_id": "f2", "updated_at": None, "primary_id": "c2", "email": None, "birth_year": None},
    ],
    parameters={"latest_event_time": datetime(2026, 5, 31, 23, 59, 59), "min_birth_year": 1900,
                "max_birth_year": 2026},
    breaks={
        "profile_id_present": row_with(1, _id=None),
        "profile_id_unique": row_with(1, _id="f1"),
        "identity_present": row_with(0, primary_id=None),
        "updated_not_in_future": row_with(0, updated_at=datetime(2026, 7, 1)),
        "email_well_formed": row_with(0, email="ann at example"),
        "birth_year_plausible": row_with(0, birth_year=1776),
        "identity_namespace_known": row_with(1, unknown_identity_namespace="Fax"),
    },
)

FEATURE_ROW = {"person_id": "p1", "as_of_date": RUN_DATE, "last_event_date": date(2026, 5, 30),
               "days_since_last_event": 2.0, "days_since_last_purchase": 366.0, "tenure_days": 40.0,
               "lifetime_purchases": 0.0, "lifetime_revenue": 0.0, "min_windowed_value": 0.0,
               "null_feature_count": 0}
FEATURES = dict(
    schema=_schema(("person_id", T.StringType()), ("as_of_date", T.DateType()), ("last_event_date", T.DateType()),
                   ("days_since_last_event", T.DoubleType()), ("days_since_last_purchase", T.DoubleType()),
                   ("tenure_days", T.DoubleType()), ("lifetime_purchases", T.DoubleType()),
                   ("lifetime_revenue", T.DoubleType()), ("min_windowed_value", T.DoubleType()),
                   ("null_feature_count", T.IntegerType())),
    rows=[dict(FEATURE_ROW), dict(FEATURE_ROW, person_id="p2", days_since_last_purchase=3.0,
                                  lifetime_purchases=2.0, lifetime_revenue=30.0, last_event_date=date(2026, 5, 29),
                                  days_since_last_event=3.0)],
    parameters={"lookback_days": 365, "no_purchase_days": 366},
    breaks={
        "has_rows": _no_rows,
        "person_present": row_with(1, person_id=None),
        "one_row_per_person_and_date": row_with(1, person_id="p1"),
        "no_leakage": row_with(0, last_event_date=RUN_DATE),
        "recency_in_range": row_with(0, days_since_last_event=400.0, tenure_days=400.0),
        "purchase_recency_in_range": row_with(1, days_since_last_purchase=0.0),
        "tenure_covers_recency": row_with(0, tenure_days=1.0),
        "purchases_not_negative": row_with(1, lifetime_purchases=-1.0),
        "revenue_not_negative": row_with(1, lifetime_revenue=-30.0),
        "window_counts_not_negative": row_with(0, min_windowed_value=-1.0),
        "no_null_feature": row_with(0, null_feature_count=1),
    },
)

TRAINING = dict(
    schema=_schema(("label", T.DoubleType()), ("split", T.StringType())),
    rows=[{"label": 1.0, "split": "train"}, {"label": 0.0, "split": "train"}, {"label": 0.0, "split": "holdout"}],
    parameters={"min_label_rate": 0.01, "max_label_rate": 0.5},
    breaks={
        "label_binary": row_with(2, label=0.5),
        "train_and_holdout_present": _each(split="train"),
        "label_rate_in_bounds": _each(label=0.0),
    },
)

FACTOR = {"feature": "days_since_last_purchase", "value": 12.0, "contribution": 0.7, "direction": "raises",
          "importance": "high"}

SCORES = dict(
    schema=_schema(("person_id", T.StringType()), ("person_model", T.StringType()),
                   ("ineligible_person", T.StringType()),
                   ("probability", T.DoubleType()), ("score", T.IntegerType()), ("percentile", T.IntegerType()),
                   ("bucket", T.StringType()), ("factors", FACTORS_TYPE)),
    rows=[{"person_id": "p1", "person_model": "convert p1", "probability": 0.91, "score": 91, "percentile": 100,
           "bucket": "high", "factors": [FACTOR]},
          {"person_id": "p2", "person_model": "convert p2", "probability": 0.02, "score": 2, "percentile": 1,
           "bucket": "low", "factors": [FACTOR]},
          {"person_id": "p1", "person_model": "churn p1", "probability": 0.3, "score": 30, "percentile": 40,
           "bucket": "low", "factors": [FACTOR]}],
    parameters={},
    breaks={
        "has_rows": _no_rows,
        "one_score_per_person_and_model": row_with(1, person_model="convert p1"),
        "only_eligible_people_scored": row_with(1, ineligible_person="p2"),
        "probability_present": row_with(1, probability=None),
        "probability_in_0_1": row_with(0, probability=1.2),
        "score_in_0_100": row_with(0, score=101),
        "percentile_in_1_100": row_with(1, percentile=0),
        "bucket_known": row_with(1, bucket="lukewarm"),
        "factors_present": row_with(2, factors=None),
    },
)

LIFETIME_VALUE = dict(
    schema=_schema(("person_model", T.StringType()), ("ineligible_person", T.StringType()),
                   ("expected_value", T.DoubleType()), ("expected_purchases", T.DoubleType()),
                   ("p_alive", T.DoubleType()), ("value_percentile", T.IntegerType())),
    rows=[{"person_model": "ltv p1", "expected_value": 120.0, "expected_purchases": 1.5, "p_alive": 0.9,
           "value_percentile": 100},
          {"person_model": "ltv p2", "expected_value": 0.0, "expected_purchases": 0.0, "p_alive": 0.0,
           "value_percentile": 1}],
    parameters={},
    breaks={
        "has_rows": _no_rows,
        "one_value_per_person": row_with(1, person_model="ltv p1"),
        "only_active_people_valued": row_with(0, ineligible_person="p1"),
        "expected_value_present": row_with(1, expected_value=None),
        "expected_value_not_negative": row_with(1, expected_value=-0.01),
        "expected_purchases_not_negative": row_with(0, expected_purchases=-1.0),
        "p_alive_in_0_1": row_with(0, p_alive=1.01),
        "percentile_in_1_100": row_with(1, value_percentile=0),
    },
)

PROFILE_TABLE = dict(
    schema=_schema(("person_id", T.StringType()), ("primary_identity_id", T.StringType()),
                   ("probability_out_of_range", T.DoubleType()), ("score_out_of_range", T.DoubleType()),
                   ("percentile_out_of_range", T.DoubleType()), ("score_date", T.DateType())),
    rows=[{"person_id": "p1", "primary_identity_id": "c1", "score_date": RUN_DATE},
          {"person_id": "p2", "primary_identity_id": "c2", "score_date": date(2026, 5, 1)}],
    parameters={"run_date": RUN_DATE},
    breaks={
        "person_present": row_with(1, person_id=None),
        "one_current_row_per_person": row_with(1, person_id="p1"),
        "probability_in_0_1": row_with(1, probability_out_of_range=-0.1),
        "score_in_0_100": row_with(1, score_out_of_range=-1.0),
        "percentile_in_1_100": row_with(0, percentile_out_of_range=101.0),
        "score_date_not_in_future": row_with(0, score_date=date(2026, 6, 2)),
        "primary_identity_present": row_with(0, primary_identity_id=None),
    },
)

SUITES = {"bronze_events": EVENTS, "bronze_profiles": PROFILES, "features": FEATURES, "training_set": TRAINING,
          "scores": SCORES, "lifetime_value": LIFETIME_VALUE, "profile_enrichment": PROFILE_TABLE}


def failed_checks(spark, suite_name: str, rows: list[dict]) -> set[str]:
    spec = SUITES[suite_name]
    suite = load_suite(SUITE_DIR / f"{suite_name}.json", {}, "error")
    frame = spark.createDataFrame([tuple(r.get(f.name) for f in spec["schema"].fields) for r in rows], spec["schema"])
    outcomes = validate(frame, suite, spec["parameters"], sample_size=3)
    assert {o.check for o in outcomes} == set(spec["breaks"]), "every check of the suite has a breaking case"
    return {o.check for o in outcomes if not o.success}
