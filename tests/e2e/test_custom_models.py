"""Custom models (tests/e2e/custom_models.yaml) through the nightly: trained, gated,
registered, scored, published; listed by `enrich models`; a bad definition refused by
`enrich models validate` and by `enrich train` before anything trains."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout
from datetime import timedelta

import pyspark.sql.functions as F
import yaml

from pipelines.core import lakehouse
from pipelines.cli import main
from pipelines.core.config import load_config
from pipelines.models import registry

from .conftest import CUSTOM_MODELS, RUN_DATE

NEXT_DAY = (RUN_DATE + timedelta(days=1)).isoformat()


def _printed(argv) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def test_custom_models_are_trained_promoted_scored_and_published_like_the_built_ins(spark, nightly):
    assert nightly.exit_codes == [0, 0]
    registry.connect(nightly.cfg)
    for name in ("outdoor_buyer", "big_spender"):
        champion = registry.champion(name)
        assert champion is not None and int(champion.version) == 1, name
        assert float(champion.tags["holdout_auc_roc"]) >= nightly.cfg.get("quality.promotion.min_auc")
    spend = registry.champion("future_spend")
    # A 60-day revenue sum over some 500 buyers is mostly noise: R2 lands near zero either side.
    assert int(spend.version) == 1 and float(spend.tags["holdout_r2"]) > -0.5
    assert 0.5 < float(spend.tags["holdout_total_ratio"]) < 2.0
    params = registry.run_params(registry.champion("outdoor_buyer").run_id)
    assert params["features"].endswith(",outdoor_interest_90d") and params["label"].startswith("count_if(")
    search = registry.load_dict(spend.run_id, "hyperparameter_search.json")["candidates"]
    assert [c["params"]["max_depth"] for c in search] == [2, 3] and all(c["validation_rmse"] > 0 for c in search)
    best = min(search, key=lambda c: c["validation_rmse"])["params"]["max_depth"]
    assert registry.run_params(spend.run_id)["gbt_max_depth"] == str(best)

    day = F.col("as_of_date") == F.lit(RUN_DATE)
    features = lakehouse.read(spark, nightly.cfg.table("features")).where(day)
    scores = lakehouse.read(spark, nightly.cfg.table("scores")).where(F.col("score_date") == F.lit(RUN_DATE))
    outdoor = scores.where(F.col("model_name") == "outdoor_buyer")
    big = scores.where(F.col("model_name") == "big_spender")
    assert outdoor.count() == features.count(), "no eligibility rule: everyone with a feature row"
    assert big.count() == features.where("lifetime_purchases > 0").count() < features.count()
    assert outdoor.where(F.size("factors") == 0).count() == 0, "gradient-boosted trees explain every score"
    # The custom logistic regression gives no factors; the standardised baseline, when it wins,
    # gives its exact log-odds terms for every score.
    baseline = float(registry.champion("big_spender").tags.get("chosen_is_baseline", 0.0)) == 1.0
    assert big.where(F.size("factors") > 0 if not baseline else F.size("factors") == 0).count() == 0

    predictions = (lakehouse.read(spark, nightly.cfg.table("predictions"))
                   .where(F.col("score_date") == F.lit(RUN_DATE)))
    assert predictions.count() == big.count(), "the regressor has the same eligibility rule"
    assert predictions.where(F.col("prediction").isNull() | ~F.col("percentile").between(1, 100)).count() == 0

    profiles = lakehouse.read(spark, nightly.cfg.table("profile_enrichment"))
    published = profiles.where(F.col("big_spender_probability").isNotNull())
    assert published.count() == big.count()
    assert published.where(~F.col("big_spender_score").between(0, 100)
                           | (F.col("big_spender_model_version") != 1)).count() == 0
    predicted = profiles.where(F.col("spend_prediction").isNotNull())
    assert predicted.count() == predictions.count()
    assert predicted.where(~F.col("spend_bucket").isin("low", "medium", "high")
                           | (F.col("spend_model_version") != 1)).count() == 0


def test_enrich_models_lists_every_model_with_its_champion_and_holdout_numbers(nightly):
    code, printed = _printed(["models", *nightly.args, "--json"])
    assert code == 0
    listed = {m["model"]: m for m in json.loads(printed)}
    assert list(listed) == ["convert_propensity", "churn_propensity", "lifetime_value", "affinity",
                            "product_affinity", "content_affinity", "segments", "outdoor_buyer", "big_spender",
                            "future_spend"]
    assert set(listed["product_affinity"]["metrics"]) == {"precision@k", "NDCG@k", "popularity"}
    assert listed["big_spender"]["kind"] == "classifier (custom)"
    assert listed["future_spend"]["kind"] == "regressor (custom)"
    assert set(listed["future_spend"]["metrics"]) == {"RMSE", "R2", "predicted/actual"}
    assert (listed["big_spender"]["champion"], listed["big_spender"]["trained_for"]) == (1, RUN_DATE.isoformat())
    assert 0.5 < listed["outdoor_buyer"]["metrics"]["AUC"] <= 1.0
    assert set(listed["segments"]["metrics"]) == {"silhouette", "k"}
    code, table = _printed(["models", *nightly.args])
    assert code == 0 and table.splitlines()[0].split()[:2] == ["model", "kind"]
    assert any(line.startswith("big_spender") and " v1 " in line and "AUC " in line for line in table.splitlines())


def _bad_overlay(tmp_path) -> str:
    models = yaml.safe_load(open(CUSTOM_MODELS))["models"]
    models["big_spender"]["features"] = ["lifetime_purchases", "visits_30d"]
    models["outdoor_buyer"]["label"] = "count_if(is_purchase AND array_contains(categories, 'Surfing')) > 0"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return str(path)


def test_a_bad_definition_fails_validation_naming_the_problem_and_trains_nothing(spark, nightly, tmp_path, capsys):
    assert main(["models", "validate", *nightly.args]) == 0
    assert "custom model definitions are valid" in capsys.readouterr().out
    bad = [*nightly.args, "--conf", _bad_overlay(tmp_path)]
    assert main(["models", "validate", *bad]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any("models.big_spender.features: unknown feature visits_30d" in line for line in err), err
    assert any("models.outdoor_buyer.label holds for nobody" in line for line in err), err
    training_sets = lakehouse.version(spark, nightly.cfg.table("training_sets"))
    assert main(["train", "--run-date", NEXT_DAY, *bad[2:]]) == 2
    assert "models.big_spender.features: unknown feature visits_30d" in capsys.readouterr().err
    assert lakehouse.version(spark, nightly.cfg.table("training_sets")) == training_sets
    registry.connect(nightly.cfg)
    assert registry.version_trained_for("big_spender", NEXT_DAY) is None


def test_a_custom_model_that_fails_its_gate_does_not_replace_its_champion(spark, nightly, tmp_path):
    root = tmp_path / "lakehouse"
    shutil.copytree(nightly.root, root)
    args = ["--run-date", NEXT_DAY, "--conf", CUSTOM_MODELS, "--set", f"lakehouse.root={root}",
            "--set", "quality.sufficiency.min_labels_per_class=20"]
    code = main(["train", "--model", "big_spender", *args, "--set", "models.big_spender.promotion.min_auc=0.999"])
    assert code == 0
    registry.connect(load_config("local", [CUSTOM_MODELS], overrides=[f"lakehouse.root={root}"]))
    new = registry.version_trained_for("big_spender", NEXT_DAY)
    assert int(new.version) == 2 and "not promoted: holdout AUC" in new.tags[registry.PROMOTION_TAG]
    assert int(registry.champion("big_spender").version) == 1
    (gate,) = (lakehouse.read(spark, str(root / "ops" / "dq_results"))
               .where((F.col("check") == "promotion") & (F.col("run_date") == F.lit(NEXT_DAY).cast("date")))
               .collect())
    assert (gate["success"], gate["severity"]) == (False, "warning")
