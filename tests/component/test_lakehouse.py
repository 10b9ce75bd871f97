from delta.tables import DeltaTable

from pipelines.core import lakehouse


def test_version_follows_every_commit_past_a_checkpoint_and_is_none_before_the_first(spark, tmp_path):
    path = str(tmp_path / "t")
    assert lakehouse.version(spark, path) is None
    seen = []
    for n in range(12):   # Delta writes a checkpoint at version 10
        lakehouse.append(spark.range(n, n + 1), path)
        seen.append(lakehouse.version(spark, path))
    # A commit made through SQL, not through this module, is seen too.
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id = 0")
    seen.append(lakehouse.version(spark, path))
    assert seen == list(range(13))
    assert seen[-1] == DeltaTable.forPath(spark, path).history(1).first()["version"]


def test_last_commit_gives_the_version_and_the_row_counts_delta_recorded(spark, tmp_path):
    path = str(tmp_path / "t")
    lakehouse.append(spark.range(0, 5), path)
    assert lakehouse.last_commit(spark, path)[0] == 0
    assert lakehouse.last_commit(spark, path)[1]["numOutputRows"] == 5
    lakehouse.insert_new(spark.range(3, 9), path, keys=["id"])   # 3 and 4 are there already
    version, metrics = lakehouse.last_commit(spark, path)
    assert (version, metrics["numTargetRowsInserted"]) == (1, 4)
    recorded = DeltaTable.forPath(spark, path).history(1).first()["operationMetrics"]
    assert metrics == {name: int(value) for name, value in recorded.items()}


def test_rows_changed_counts_only_a_commit_made_after_the_version_given(spark, tmp_path):
    path = str(tmp_path / "t")
    lakehouse.append(spark.range(0, 5), path)
    assert lakehouse.rows_changed(spark, path, None, ["numTargetRowsInserted", "numOutputRows"]) == (5, 0)
    # Nothing committed since version 0: the append's 5 rows are not this write's.
    assert lakehouse.rows_changed(spark, path, 0, ["numOutputRows"]) == (0, 0)
    lakehouse.insert_new(spark.range(3, 9), path, keys=["id"])
    assert lakehouse.rows_changed(spark, path, 0, ["numTargetRowsInserted", "numOutputRows"]) == (4, 1)
    assert lakehouse.rows_changed(spark, path, 0, ["numDeletedRows"]) == (None, 1)
