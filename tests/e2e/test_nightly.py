"""End to end: generate -> nightly, twice, on a small lakehouse; assertions on the tables."""

import pyspark.sql.functions as F
from mlflow import MlflowClient
from pyspark.sql.types import MapType

from pipelines.core import lakehouse
from pipelines.generate.oracle import oracle_ratios
from pipelines.ingest.parse import REASON_NO_IDENTITY

from .conftest import RUN_DATE, TABLES


def _table(spark, nightly, name):
    return lakehouse.read(spark, nightly.cfg.table(name))


def _ledger(spark, nightly, step):
    return (_table(spark, nightly, "runs").where((F.col("step") == step) & (F.col("status") == "succeeded"))
            .orderBy("started_at").collect())


def test_both_nightly_runs_succeed(nightly):
    assert nightly.exit_codes == [0, 0]


def test_every_landing_record_is_in_bronze_in_quarantine_or_counted_as_duplicate(spark, nightly):
    first_ingest = _ledger(spark, nightly, "ingest")[0]["metrics"]
    for kind, table in (("events", "bronze_events"), ("profiles", "bronze_profiles")):
        records = nightly.landing_lines(kind)
        bronze = _table(spark, nightly, table).count()
        quarantined = (_table(spark, nightly, "quarantine").where(F.col("record_kind") == kind)
                       .agg(F.coalesce(F.sum("occurrences"), F.lit(0))).first()[0])
        duplicates = first_ingest[f"{kind}_batch_duplicates"] + first_ingest[f"{kind}_already_present"]
        assert records == bronze + quarantined + duplicates, kind
        assert first_ingest[f"{kind}_records_in"] == records
    assert first_ingest["events_quarantined"] > 0 and first_ingest["events_batch_duplicates"] > 0


def test_the_second_ingest_reads_no_file_twice(spark, nightly):
    second = _ledger(spark, nightly, "ingest")[1]["metrics"]
    assert second["events_files_read"] == 0 and second["profiles_files_read"] == 0
    assert second["events_inserted"] == 0 and second["profiles_inserted"] == 0


def test_quarantined_rows_carry_a_reason_and_their_source_file(spark, nightly):
    rows = _table(spark, nightly, "quarantine")
    reasons = {r["reason"] for r in rows.select("reason").distinct().collect()}
    assert all(r.startswith("not JSON: ") for r in reasons
               if r not in {REASON_NO_IDENTITY, "missing _id", "missing timestamp"})
    assert any(r.startswith("not JSON: ") for r in reasons)
    assert rows.where(F.col("source_file").isNull() | F.col("raw").isNull()).count() == 0


def test_one_feature_row_per_person_active_in_the_lookback(spark, nightly):
    lookback = nightly.cfg.get("features.eligibility_lookback_days")
    features = _table(spark, nightly, "features").where(F.col("as_of_date") == F.lit(RUN_DATE))
    active = (_table(spark, nightly, "silver_events")
              .where((F.col("event_date") < F.lit(RUN_DATE))
                     & (F.datediff(F.lit(RUN_DATE), F.col("event_date")) <= lookback))
              .select("person_id").distinct())
    assert features.count() == features.select("person_id").distinct().count() == active.count()
    assert features.join(active, "person_id", "left_anti").count() == 0


def test_every_event_resolves_to_a_person_and_logins_link_devices(spark, nightly):
    events = _table(spark, nightly, "silver_events")
    assert events.where(F.col("person_id").isNull()).count() == 0
    graph = _table(spark, nightly, "identity_graph")
    linked = graph.where((F.col("namespace") == "ECID") & (F.col("anchor_namespace") == "CRMID")).count()
    assert linked > 0


def test_both_models_rank_clearly_better_than_chance_and_than_the_baseline_bar(spark, nightly):
    train = _ledger(spark, nightly, "train")[0]["metrics"]
    for model in ("convert_propensity", "churn_propensity"):
        assert train[f"{model}.holdout_auc_roc"] > 0.7, train
        assert 0 < train[f"{model}.holdout_positive_rate"] < 1
        assert train[f"{model}.holdout_baseline_auc_roc"] > 0.6, "the logistic baseline is logged beside"


def test_the_champion_is_registered_and_the_rerun_reuses_it(spark, nightly):
    runs = _ledger(spark, nightly, "train")
    uri = nightly.cfg.mlflow_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # other tests may point MLflow elsewhere
    for model in ("convert_propensity", "churn_propensity"):
        assert [r["metrics"][f"{model}.reused"] for r in runs] == [0.0, 1.0]
        versions = client.search_model_versions(f"name = '{model}'")
        assert len(versions) == 1
        assert client.get_model_version_by_alias(model, "champion").version == versions[0].version
        run = client.get_run(versions[0].run_id)
        assert {"silver_events_version", "training_set_version", "target"} <= set(run.data.params)
        assert {"holdout_auc_roc", "holdout_pr_auc", "holdout_brier", "holdout_lift_top_decile",
                "holdout_baseline_auc_roc"} <= set(run.data.metrics)
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert plots == {f"plots/{n}.png" for n in ("holdout_roc", "holdout_gains", "holdout_calibration",
                                                    "feature_importances")}


def test_each_model_scores_exactly_its_eligible_people(spark, nightly):
    scores = _table(spark, nightly, "scores").where(F.col("score_date") == F.lit(RUN_DATE))
    features = _table(spark, nightly, "features").where(F.col("as_of_date") == F.lit(RUN_DATE))
    within = nightly.cfg.get("models.churn_propensity.eligible_purchased_within_days")
    expected = {"convert_propensity": features,
                "churn_propensity": features.where(F.col("days_since_last_purchase") <= within)}
    for model, eligible in expected.items():
        scored = scores.where(F.col("model_name") == model).select("person_id")
        assert scored.count() == eligible.count() > 0, model
        assert scored.exceptAll(eligible.select("person_id")).count() == 0, model


def test_one_profile_row_per_scored_person_with_valid_attributes(spark, nightly):
    scores = _table(spark, nightly, "scores").where(F.col("score_date") == F.lit(RUN_DATE))
    profiles = _table(spark, nightly, "profile_enrichment")
    people = scores.select("person_id").distinct()
    assert profiles.count() == profiles.select("person_id").distinct().count() == people.count() > 0
    assert profiles.join(people, "person_id", "left_anti").count() == 0
    for prefix in ("convert", "churn"):
        bad = profiles.where(~F.col(f"{prefix}_probability").between(0, 1)
                             | ~F.col(f"{prefix}_score").between(0, 100)
                             | ~F.col(f"{prefix}_percentile").between(1, 100)
                             | ~F.col(f"{prefix}_bucket").isin("low", "medium", "high")
                             | (F.col(f"{prefix}_model_version") != 1))
        assert bad.count() == 0, prefix
    assert profiles.where(F.col("convert_probability").isNull() | F.col("primary_identity_id").isNull()).count() == 0
    churn_scored = scores.where(F.col("model_name") == "churn_propensity").count()
    assert profiles.where(F.col("churn_probability").isNotNull()).count() == churn_scored < profiles.count()
    props = spark.sql(f"SHOW TBLPROPERTIES delta.`{nightly.cfg.table('profile_enrichment')}`").collect()
    assert {r["key"]: r["value"] for r in props}.get("delta.enableChangeDataFeed") == "true"


HISTORY_DAYS = 240   # the fixture's --days


def _truth(spark, nightly, *columns):
    """The generator's latent traits of registered people, keyed like the profile table."""
    return (spark.read.json(str(nightly.root / "landing" / "ground_truth")).where(F.col("crm_id").isNotNull())
            .select(F.col("crm_id").alias("primary_identity_id"), *columns))


def _active_days_after_history(horizon: int):
    """Days of the `horizon` after the history ends during which the person is a customer."""
    return F.greatest(F.lit(0.0), F.least("active_until_day", F.lit(float(HISTORY_DAYS + horizon)))
                      - F.greatest("start_day", F.lit(float(HISTORY_DAYS))))


def _correlation_with_truth(spark, nightly, insight: str, oracle):
    joined = (_table(spark, nightly, "profile_enrichment").where(F.col(insight).isNotNull())
              .join(_truth(spark, nightly, oracle.alias("oracle")), "primary_identity_id"))
    return joined.count(), joined.stat.corr(insight, "oracle")


def test_scores_rank_buyers_above_non_buyers_on_the_ground_truth(spark, nightly):
    people, correlation = _correlation_with_truth(spark, nightly, "convert_probability",
                                                  F.col("oracle_purchase_probability"))
    assert people > 100 and correlation > 0.3, correlation


def test_lifetime_value_is_fitted_gated_and_scored_for_every_active_buyer(spark, nightly):
    train = _ledger(spark, nightly, "train")[0]["metrics"]
    assert train["lifetime_value.promoted"] == 1.0, "the holdout total is within the gate's bounds"
    assert 0.5 <= train["lifetime_value.holdout_total_ratio"] <= 1.5
    # Every way was judged on the same buyers, and the best one is the version.
    ways = ("bgnbd_gamma_gamma", "mbgnbd_gamma_gamma", "pareto_nbd_gamma_gamma", "gbt_regressor")
    maes = {way: train[f"lifetime_value.holdout_{way}_mae"] for way in ways}
    assert train["lifetime_value.holdout_mae"] == min(maes.values())
    counting_best = min(maes[way] for way in ways[:-1])
    assert train["lifetime_value.value_method_is_regressor"] == float(maes["gbt_regressor"] < counting_best)
    features = _table(spark, nightly, "features").where(F.col("as_of_date") == F.lit(RUN_DATE))
    buyers = (_table(spark, nightly, "silver_events").where(F.col("is_purchase") & (F.col("event_date") < RUN_DATE))
              .select("person_id").distinct().join(features.select("person_id"), "person_id"))
    values = _table(spark, nightly, "lifetime_value").where(F.col("score_date") == F.lit(RUN_DATE))
    assert values.count() == buyers.count() > 100
    assert values.select("person_id").exceptAll(buyers).count() == 0
    profiles = _table(spark, nightly, "profile_enrichment")
    assert profiles.where(F.col("ltv_expected_value").isNotNull()).count() == values.count()
    assert profiles.where(F.col("ltv_p_alive").isNotNull() & ~F.col("ltv_p_alive").between(0, 1)).count() == 0


def test_lifetime_values_follow_the_generators_expected_spend(spark, nightly):
    active = _active_days_after_history(nightly.cfg.get("models.lifetime_value.horizon_days"))
    people, correlation = _correlation_with_truth(spark, nightly, "ltv_expected_value",
                                                  F.col("purchase_rate_per_day") * active * F.col("spend_level"))
    assert people > 100 and correlation > 0.3, correlation


def test_engagement_is_on_every_profile_and_follows_how_often_people_visit(spark, nightly):
    profiles = _table(spark, nightly, "profile_enrichment")
    assert profiles.where(F.col("engagement_score").isNull() | ~F.col("engagement_score").between(0, 100)).count() == 0
    # Among people still active when the history ends, engagement should track the visit rate.
    joined = (profiles.join(_truth(spark, nightly, "visit_rate_per_day", "active_until_day"), "primary_identity_id")
              .where(F.col("active_until_day") >= HISTORY_DAYS))
    correlation = joined.stat.corr("engagement_score", "visit_rate_per_day")
    assert joined.count() > 100 and correlation > 0.3, correlation


def test_churn_scores_follow_the_generators_chance_of_no_purchase(spark, nightly):
    # P(no purchase in the horizon after the history ends) from each person's latent traits.
    active = _active_days_after_history(nightly.cfg.get("models.churn_propensity.horizon_days"))
    people, correlation = _correlation_with_truth(spark, nightly, "churn_probability",
                                                  F.exp(-F.col("purchase_rate_per_day") * active))
    assert people > 100 and correlation > 0.3, correlation


def test_top_categories_capture_most_of_what_the_generators_preferences_would(spark, nightly):
    k = nightly.cfg.get("models.affinity.top_k")
    profiles = _table(spark, nightly, "profile_enrichment").where(F.col("affinity_top_categories").isNotNull())
    preferences = F.from_json(F.to_json("category_preferences"), "map<string,double>").alias("category_preferences")
    joined = profiles.join(_truth(spark, nightly, preferences, "top_category"), "primary_identity_id")
    # The preference mass the model's top k holds, over the most any k categories hold (the oracle's).
    prefs = F.map_values("category_preferences")
    captured = F.aggregate(F.col("affinity_top_categories"), F.lit(0.0),
                           lambda acc, c: acc + F.coalesce(F.col("category_preferences")[c["category"]], F.lit(0.0)))
    best = F.aggregate(F.slice(F.sort_array(prefs, asc=False), 1, k), F.lit(0.0), lambda acc, v: acc + v)
    row = joined.agg(F.count(F.lit(1)).alias("people"), (F.sum(captured) / F.sum(best)).alias("ratio"),
                     F.avg((F.col("affinity_top_category") == F.col("top_category")).cast("double")).alias("top1"),
                     F.max(F.size("affinity_top_categories")).alias("k")).first()
    assert row["people"] > 100 and row["k"] == k
    assert row["ratio"] > 0.75, row          # random categories would hold k/12 of the oracle's mass or less
    assert row["top1"] > 0.5, row            # chance: 1 in 12
    train = _ledger(spark, nightly, "train")[0]["metrics"]
    assert train["affinity.promoted"] == 1.0
    assert train["affinity.holdout_precision_at_k"] > 1.5 * train["affinity.holdout_popularity_precision_at_k"]


def test_every_active_person_gets_one_named_segment(spark, nightly):
    features = _table(spark, nightly, "features").where(F.col("as_of_date") == F.lit(RUN_DATE))
    segments = _table(spark, nightly, "segments").where(F.col("score_date") == F.lit(RUN_DATE))
    assert segments.count() == features.count()
    assert segments.select("person_id").exceptAll(features.select("person_id")).count() == 0
    named = segments.groupBy("segment_id").agg(F.countDistinct("segment_name").alias("names")).collect()
    candidates = nightly.cfg.get("models.segments.k_candidates")
    assert min(candidates) <= len(named) <= max(candidates) and all(r["names"] == 1 for r in named)
    assert segments.select("segment_name").distinct().count() == len(named)
    train = _ledger(spark, nightly, "train")[0]["metrics"]
    assert train["segments.silhouette"] >= nightly.cfg.get("models.segments.promotion.min_silhouette")
    assert train["segments.k"] == len(named)
    profiles = _table(spark, nightly, "profile_enrichment")
    assert profiles.where(F.col("segment_name").isNotNull()).count() == segments.count()


def test_each_model_comes_close_to_the_oracle_on_its_holdout(spark, nightly):
    ratios = oracle_ratios(spark, nightly.cfg, str(nightly.root / "landing" / "ground_truth"))
    assert set(ratios) == {"convert_propensity", "churn_propensity", "lifetime_value", "affinity", "product_affinity",
                           "content_affinity"}
    assert all(r["people"] > 100 for r in ratios.values()), ratios
    # The oracle knows each person's latent rates; a model only sees their events.
    assert ratios["convert_propensity"]["ratio"] > 0.85, ratios
    assert ratios["churn_propensity"]["ratio"] > 0.85, ratios
    assert ratios["lifetime_value"]["ratio"] > 0.4, ratios
    assert ratios["affinity"]["ratio"] > 0.8, ratios
    # Products: 300 of them, a few dozen interactions a person; popularity is the floor.
    assert ratios["product_affinity"]["ratio"] > 0.55, ratios
    assert ratios["product_affinity"]["model"] > 2 * ratios["product_affinity"]["popularity"], ratios
    assert ratios["content_affinity"]["ratio"] > 0.75, ratios


def _comparable(df):
    """Set operations refuse map columns; compare those as JSON text."""
    return df.select(*[F.to_json(f.name).alias(f.name) if isinstance(f.dataType, MapType) else F.col(f.name)
                       for f in df.schema.fields])


def test_a_second_nightly_run_leaves_every_table_as_it_was(spark, nightly):
    for name in TABLES:
        path = nightly.cfg.table(name)
        before = _comparable(spark.read.format("delta")
                             .option("versionAsOf", nightly.versions_after_first[name]).load(path))
        after = _comparable(lakehouse.read(spark, path))
        assert before.exceptAll(after).count() == 0 and after.exceptAll(before).count() == 0, name


def test_the_summary_names_date_auc_mlflow_run_and_profile_table(nightly):
    out = nightly.stdout_first
    assert f"for {RUN_DATE}: done" in out
    assert "model: convert_propensity v1, holdout AUC-ROC" in out and "model: churn_propensity v1" in out
    assert "mlflow run " in out and "model: lifetime_value v1, holdout MAE" in out
    assert nightly.cfg.table("profile_enrichment") in out
    report = (nightly.root / "reports" / RUN_DATE.isoformat() / "index.html").read_text()
    # Written last by the rerun, which reused the model: the ROC comes from its MLflow run.
    for model in ("convert_propensity", "churn_propensity"):
        assert f"alt='{model} ROC curve'" in report and f"alt='{model} score histogram'" in report
        assert f"alt='{model} calibration'" in report and f"alt='{model} cumulative gains'" in report
    assert "lift in the top decile" in out and "Brier" in out


def test_every_layer_was_checked_and_the_results_are_recorded_and_rendered(spark, nightly):
    results = lakehouse.read(spark, nightly.cfg.table("dq_results"))
    suites = {r["suite"] for r in results.select("suite").distinct().collect()}
    assert suites == {"bronze_events", "bronze_profiles", "features", "training_set", "model_gates", "scores",
                      "predictions", "lifetime_value", "affinity", "product_affinity", "content_affinity", "segments",
                      "drift", "profile_enrichment"}
    blocking = results.where(~F.col("success") & (F.col("severity") == "error")).count()
    assert blocking == 0, "a run that finished has no failed error-level check"
    gates = {(r["check"], r["expectation"].split(":")[0]): r["success"]
             for r in results.where(F.col("suite") == "model_gates").collect()}
    assert gates == {(f"{check}", f"{check}({model})"): True for check in ("data_sufficiency", "promotion")
                     for model in ("convert_propensity", "churn_propensity", "lifetime_value", "category_affinity",
                                   "product_affinity", "content_affinity", "customer_segments", "outdoor_buyer",
                                   "big_spender", "future_spend")}
    docs = nightly.root / "reports" / "data_docs"
    index = (docs / "index.html").read_text()
    for suite in ("bronze_events", "features", "scores", "profile_enrichment"):
        assert suite in index
        assert list((docs / "validations" / suite).rglob("*.html")), suite
    assert f"Data Docs: {docs}/index.html" in nightly.stdout_first
    # Tenure grows with the calendar for everyone: it is left out of drift (quality.drift.calendar_features).
    assert "psi_tenure_days" not in nightly.stdout_first and "psi_days_since_last_event" in "".join(
        r["check"] for r in results.where(F.col("suite") == "drift").collect())
    assert nightly.exit_codes == [0, 0]
    assert "../data_docs/index.html" in (nightly.root / "reports" / RUN_DATE.isoformat() / "index.html").read_text()
