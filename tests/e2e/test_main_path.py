"""The main path in the fast tier: generated XDM files through one nightly to the profile
table, with every record accounted for and every built-in insight published."""

from __future__ import annotations

import gzip

import pyspark.sql.functions as F

from pipelines.core import lakehouse

from tests.conftest import SMALL_NIGHT_DATE as RUN_DATE


def _table(spark, night, name):
    return lakehouse.read(spark, night.cfg.table(name))


def test_a_small_night_ends_with_exit_0_and_says_where_its_results_are(small_nightly):
    assert small_nightly.exit_code == 0
    out = small_nightly.stdout
    assert f"for {RUN_DATE}: done" in out and small_nightly.cfg.table("profile_enrichment") in out
    assert (small_nightly.root / "reports" / RUN_DATE.isoformat() / "index.html").is_file()


def test_every_landing_record_is_in_bronze_in_quarantine_or_a_counted_duplicate(spark, small_nightly):
    ingest = (_table(spark, small_nightly, "runs").where(F.col("step") == "ingest").first())["metrics"]
    for kind, table in (("events", "bronze_events"), ("profiles", "bronze_profiles")):
        folder = small_nightly.root / "landing" / kind
        records = sum(1 for f in folder.iterdir() for line in gzip.open(f, "rt") if line.strip())
        quarantined = (_table(spark, small_nightly, "quarantine").where(F.col("record_kind") == kind)
                       .agg(F.coalesce(F.sum("occurrences"), F.lit(0))).first()[0])
        bronze = _table(spark, small_nightly, table).count()
        assert records == ingest[f"{kind}_records_in"] == bronze + quarantined + ingest[f"{kind}_batch_duplicates"]


def test_every_insight_is_on_the_profiles_of_the_people_scored(spark, small_nightly):
    profiles = _table(spark, small_nightly, "profile_enrichment")
    people = profiles.count()
    assert people == profiles.select("person_id").distinct().count() > 0
    filled = profiles.agg(*[F.count(column).alias(column) for column in (
        "convert_probability", "churn_probability", "ltv_expected_value", "affinity_top_category", "segment_name",
        "engagement_score", "spend_prediction", "primary_identity_id")]).first().asDict()
    assert filled["convert_probability"] == filled["engagement_score"] == filled["primary_identity_id"] == people
    assert 0 < filled["churn_probability"] < people and 0 < filled["ltv_expected_value"] <= people
    assert filled["affinity_top_category"] > 0 and filled["segment_name"] == people
    assert 0 < filled["spend_prediction"] < people   # the custom regressor, for past buyers
    # Products and content sections: up to k each, best first, for the people active tonight.
    for column, item, k in (("product_affinity_top_skus", "sku", 10), ("content_affinity_top_sections", "section", 3)):
        ranked = profiles.where(F.size(column) > 0).select(column).collect()
        assert 0 < len(ranked) <= people
        assert all(len(row[column]) <= k and len({r[item] for r in row[column]}) == len(row[column])
                   and [r["score"] for r in row[column]] == sorted((r["score"] for r in row[column]), reverse=True)
                   for row in ranked)
    assert profiles.where(~F.col("convert_probability").between(0, 1) | ~F.col("engagement_score").between(0, 100)
                          | ~F.col("convert_bucket").isin("low", "medium", "high")).count() == 0
