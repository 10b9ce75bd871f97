import pytest

from pipelines.core.config import load_config
from pipelines.core.errors import BadInputError
from pipelines.core.session import step_settings

PARTITIONS = "spark.sql.adaptive.coalescePartitions.initialPartitionNum"


def test_a_step_runs_with_its_settings_and_the_session_gets_its_own_back(spark, tmp_path):
    cfg = load_config("local", overrides=[f"spark.step_conf.ingest.{PARTITIONS}=48", f"lakehouse.root={tmp_path}"])
    spark.conf.set(PARTITIONS, "16")
    try:
        with step_settings(spark, cfg, "ingest"):
            assert spark.conf.get(PARTITIONS) == "48"
        assert spark.conf.get(PARTITIONS) == "16"
        with step_settings(spark, cfg, "score"):
            assert spark.conf.get(PARTITIONS) == "16"
    finally:
        spark.conf.unset(PARTITIONS)
    with step_settings(spark, cfg, "ingest"):
        assert spark.conf.get(PARTITIONS) == "48"
    assert PARTITIONS not in spark.conf.getAll


def test_a_setting_fixed_at_start_up_is_refused_by_name(spark, tmp_path):
    cfg = load_config("local", overrides=["spark.step_conf.score.spark.driver.memory=2g", f"lakehouse.root={tmp_path}"])
    with pytest.raises(BadInputError, match="spark.step_conf.score: spark.driver.memory"):
        with step_settings(spark, cfg, "score"):
            pass
