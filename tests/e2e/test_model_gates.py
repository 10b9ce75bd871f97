"""The sufficiency and promotion gates, the retraining cadence, and what a version keeps
beside its model, on a copy of the nightly lakehouse (each model's champion is v1). The
gate tests train the convert model only."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import mlflow.pyfunc
import pyspark.sql.functions as F
import pytest
from mlflow import MlflowClient

from pipelines.core import lakehouse
from pipelines.cli import main
from pipelines.core.config import load_config
from pipelines.models import artifacts, registry
from pipelines.models.affinity import PRODUCTS, strengths_as_of
from pipelines.models.item_affinity import events_window, exclusions_as_of, groups_as_of, neighbours_of, recommend

from .conftest import RUN_DATE

NEXT_DAY = (RUN_DATE + timedelta(days=1)).isoformat()
TRAIN_CONVERT = ["train", "--model", "convert_propensity", "--run-date", NEXT_DAY]


@pytest.fixture
def copy(nightly, tmp_path):
    root = tmp_path / "lakehouse"
    shutil.copytree(nightly.root, root)
    sets = [f"lakehouse.root={root}", "models.convert_propensity.gbt.max_iter=20",
            "models.convert_propensity.search=null", "models.churn_propensity.gbt.max_iter=20",
            "quality.sufficiency.min_labels_per_class=20"]
    return load_config("local", overrides=sets), [arg for s in sets for arg in ("--set", s)]


def _champion(cfg):
    registry.connect(cfg)
    return registry.champion(cfg.get("models.convert_propensity.registered_name"))


def _gate_rows(spark, cfg, check):
    return (lakehouse.read(spark, cfg.table("dq_results"))
            .where((F.col("suite") == "model_gates") & (F.col("check") == check)
                   & (F.col("run_date") == F.lit(NEXT_DAY).cast("date"))).collect())


def test_too_few_labels_refuse_training_and_the_champion_stays(spark, copy):
    cfg, args = copy
    assert int(_champion(cfg).version) == 1
    code = main([*TRAIN_CONVERT, *args, "--set", "quality.sufficiency.min_labels_per_class=100000"])
    assert code == 0
    assert int(_champion(cfg).version) == 1
    assert registry.version_trained_for("convert_propensity", NEXT_DAY) is None
    (row,) = _gate_rows(spark, cfg, "data_sufficiency")
    assert (row["success"], row["severity"]) == (False, "warning")
    assert "at least 100000 of each are needed" in row["observed"]


def test_without_a_champion_a_refused_model_is_skipped_unless_it_is_required(spark, copy, tmp_path, capsys):
    cfg, args = copy
    empty = [f"mlflow.tracking_uri=sqlite:///{tmp_path}/empty.db", f"mlflow.artifact_location={tmp_path}/art"]
    refuse = [*TRAIN_CONVERT, *args, "--set", "quality.sufficiency.min_labels_per_class=100000",
              *[arg for s in empty for arg in ("--set", s)]]
    assert main(refuse) == 0
    err = capsys.readouterr().err
    assert "training refused: the train split has" in err and "no champion yet, so it is skipped tonight" in err
    (row,) = _gate_rows(spark, cfg, "data_sufficiency")
    assert (row["success"], row["severity"]) == (False, "warning")

    assert main([*refuse, "--set", "models.convert_propensity.required=true"]) == 3
    err = capsys.readouterr().err
    assert "there is no champion to score with, and the model is required" in err
    assert {(r["success"], r["severity"]) for r in _gate_rows(spark, cfg, "data_sufficiency")} == {
        (False, "warning"), (False, "error")}


def test_a_model_below_the_minimum_auc_is_registered_but_not_promoted(spark, copy):
    cfg, args = copy
    code = main([*TRAIN_CONVERT, *args, "--set", "quality.promotion.min_auc=0.999"])
    assert code == 0
    new = registry.version_trained_for("convert_propensity", NEXT_DAY)
    assert new is not None and int(new.version) == 2
    assert new.tags["promotion"].startswith("convert_propensity v2 registered, not promoted: holdout AUC")
    assert int(_champion(cfg).version) == 1
    (row,) = _gate_rows(spark, cfg, "promotion")
    assert (row["success"], row["severity"]) == (False, "warning")
    assert "champion v1" in row["observed"], "the champion was scored on the same holdout"
    # The rerun reuses v2 and still reports why it is not the champion.
    assert main([*TRAIN_CONVERT, *args]) == 0
    assert int(_champion(cfg).version) == 1


def test_the_next_night_retrains_only_when_due_and_an_explicit_train_always_trains(spark, copy):
    cfg, args = copy
    # The nightly's train step alone: the reuse decision is the nightly's, the other steps
    # are the same as the first night's (and scoring with the champion is tested there).
    assert main(["nightly", "--only-step", "train", "--invocation", "next-night", "--run-date", NEXT_DAY, *args]) == 0
    for name in ("convert_propensity", "churn_propensity", "lifetime_value", "category_affinity",
                 "customer_segments"):
        assert registry.version_trained_for(name, NEXT_DAY) is None, "a week has not passed"
    (train,) = (lakehouse.read(spark, cfg.table("runs"))
                .where((F.col("step") == "train") & (F.col("run_date") == F.lit(NEXT_DAY).cast("date"))).collect())
    keys = ("convert_propensity", "churn_propensity", "lifetime_value", "affinity", "segments")
    assert {key: train["metrics"][f"{key}.reused"] for key in keys} == dict.fromkeys(keys, 1.0)
    # Explicitly asked for, training happens whatever the cadence says.
    assert main(["train", "--model", "churn_propensity", "--run-date", NEXT_DAY, *args]) == 0
    assert int(registry.version_trained_for("churn_propensity", NEXT_DAY).version) == 2


def test_affinity_and_segments_that_fail_their_gates_are_registered_but_not_promoted(spark, copy):
    cfg, args = copy
    impossible = {"affinity": "models.affinity.promotion.min_lift_over_popularity=100",
                  "segments": "models.segments.promotion.min_silhouette=0.999"}
    # Segments are fitted on the run date's feature rows, which the features step writes.
    assert main(["features", "--run-date", NEXT_DAY, *args]) == 0
    for key, rule in impossible.items():
        name = cfg.get(f"models.{key}.registered_name")
        assert main(["train", "--model", key, "--run-date", NEXT_DAY, *args, "--set", rule]) == 0
        new = registry.version_trained_for(name, NEXT_DAY)
        assert int(new.version) == 2 and "not promoted" in new.tags[registry.PROMOTION_TAG]
        assert int(registry.champion(name).version) == 1


def test_a_co_occurrence_version_keeps_its_neighbours_and_its_nights_lend_through_them(spark, copy, tmp_path):
    cfg, args = copy
    co_occurrence = [*args, "--set", "models.product_affinity.candidates=[co_occurrence]",
                     "--set", "models.product_affinity.promotion.max_precision_drop=1.0"]
    assert main(["train", "--model", "product_affinity", "--run-date", NEXT_DAY, *co_occurrence]) == 0
    new = registry.version_trained_for("product_affinity", NEXT_DAY)
    assert int(registry.champion("product_affinity").version) == int(new.version) == 2
    parameters = artifacts.affinity_parameters(new.run_id)
    assert parameters["method"] == "co_occurrence"
    day = date.fromisoformat(NEXT_DAY)
    events = events_window(lakehouse.read(spark, cfg.table("silver_events")), parameters, day)
    strengths = strengths_as_of(events, parameters, day, PRODUCTS).cache()
    kept = artifacts.item_similarities(new.run_id)
    counted = neighbours_of(strengths, "sku", parameters)
    assert len(kept) > 100
    assert kept.sort_values(["item", "neighbour"]).reset_index(drop=True).equals(
        counted.sort_values(["item", "neighbour"]).reset_index(drop=True)), "the neighbours as of its run date"

    # Loaded through MLflow, the version ranks with its kept neighbours too, not with those
    # of the input it is given.
    loaded = mlflow.pyfunc.load_model(f"models:/product_affinity/{new.version}")
    few = strengths.join(strengths.select("person_id").distinct().orderBy("person_id").limit(20), "person_id")
    predicted = loaded.predict(few.select("person_id", "sku", "strength").toPandas())
    expected = recommend(few, parameters, 10, "sku", similarities=kept).orderBy("person_id", "rank").toPandas()
    ranks = ["person_id", "rank", "sku"]
    assert len(predicted) > 0 and predicted[ranks].values.tolist() == expected[ranks].values.tolist()

    # Other neighbours put in the version's place: the night ranks with those, not tonight's.
    other = kept.assign(neighbour=kept["neighbour"].to_numpy()[::-1])
    other_file = tmp_path / artifacts.ITEM_SIMILARITIES
    other.to_parquet(other_file, index=False)
    MlflowClient().log_artifact(new.run_id, str(other_file))
    assert main(["features", "--run-date", NEXT_DAY, *args]) == 0
    assert main(["score", "--run-date", NEXT_DAY, *args]) == 0

    active = (lakehouse.read(spark, cfg.table("features")).where(F.col("as_of_date") == F.lit(day))
              .select("person_id"))

    def top(similarities):
        ranked = recommend(strengths, parameters, 10, "sku", exclusions_as_of(events, parameters, day),
                           groups_as_of(events, parameters, day), similarities).join(active, "person_id")
        return {tuple(r) for r in ranked.select("person_id", "rank", "sku").collect()}
    scored = {tuple(r) for r in lakehouse.read(spark, cfg.table("product_affinity"))
              .where(F.col("score_date") == F.lit(day)).select("person_id", "rank", "sku").collect()}
    assert scored == top(other) != top(kept)
    strengths.unpersist()
