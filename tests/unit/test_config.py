import pytest

from pipelines.core.config import deep_merge, load_config
from pipelines.core.errors import BadInputError


def test_overlays_merge_nested_keys_and_keep_the_rest():
    merged = deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 10}})
    assert merged == {"a": {"b": 10, "c": 2}, "d": 3}


def test_set_parses_yaml_values_and_creates_sections(tmp_path):
    cfg = load_config("local", overrides=["features.windows_days=[7, 14]", "extra.new.key=3",
                                          f"lakehouse.root={tmp_path}"])
    assert cfg.get("features.windows_days") == [7, 14]
    assert cfg.get("extra.new.key") == 3
    assert cfg.table("scores") == f"{tmp_path}/gold/scores"
    assert cfg.landing("events") == f"{tmp_path}/landing/events"


def test_extra_conf_file_overrides_the_environment_overlay(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("scoring:\n  buckets:\n    high_from_percentile: 90\n")
    cfg = load_config("local", files=[str(extra)])
    assert cfg.get("scoring.buckets.high_from_percentile") == 90
    assert cfg.get("scoring.buckets.medium_from_percentile") == 50


@pytest.mark.parametrize("pair", ["novalue", "=3", "a..b=1"])
def test_malformed_set_is_bad_input(pair):
    with pytest.raises(BadInputError, match="--set"):
        load_config("local", overrides=[pair])


def test_unknown_env_and_missing_file_are_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="--env"):
        load_config("staging")
    with pytest.raises(BadInputError, match="not found"):
        load_config("local", files=[str(tmp_path / "nope.yaml")])


def test_uri_roots_are_kept_as_uris():
    cfg = load_config("cluster", overrides=["lakehouse.root=s3a://bucket/lake"])
    assert cfg.table("profile_enrichment") == "s3a://bucket/lake/gold/profile_enrichment"


def test_a_table_set_by_its_old_key_is_refused_naming_the_new_one(tmp_path):
    with pytest.raises(BadInputError, match="lakehouse.tables.events is now lakehouse.tables.bronze_events"):
        load_config("local", overrides=[f"lakehouse.tables.events={tmp_path}/elsewhere"])


@pytest.mark.parametrize("pair,message", [
    ("models.convert_propensity.profile_prefix=convert' OR '1'='1", "models.convert_propensity.profile_prefix"),
    ("models.churn_propensity.registered_name=churn'; DROP", "models.churn_propensity.registered_name"),
    ("models.propensity=[Convert-Propensity]", "'Convert-Propensity' is not a model name"),
])
def test_model_names_that_could_break_out_of_sql_quotes_are_refused(pair, message):
    with pytest.raises(BadInputError, match=message):
        load_config("local", overrides=[pair])


def test_a_setting_of_an_earlier_release_is_refused_naming_the_new_one():
    with pytest.raises(BadInputError, match="orchestration.lock_stale_after_hours is now "
                                            "orchestration.lock_stale_after_minutes"):
        load_config("local", overrides=["orchestration.lock_stale_after_hours=12"])
