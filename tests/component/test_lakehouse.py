import pyspark.sql.functions as F
from delta.tables import DeltaTable

from pipelines.core import lakehouse
from pipelines.core.session import settings_applied


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


def test_a_small_batch_inserts_the_same_rows_as_the_merge_in_one_commit(spark, tmp_path):
    rows = {}
    for way, batch_rows in (("merge", None), ("small", 6)):
        path = str(tmp_path / way)
        lakehouse.append(spark.range(0, 5).withColumn("part", F.col("id") % 2), path, partition_by=["part"])
        # 3 and 4 are there already; the batch brings a column the table does not have yet.
        batch = spark.range(3, 9).withColumn("part", F.col("id") % 2).withColumn("note", F.lit("new"))
        lakehouse.insert_new(batch, path, keys=["id"], partition_by=["part"], batch_rows=batch_rows)
        assert lakehouse.rows_changed(spark, path, 0, ["numTargetRowsInserted", "numOutputRows"]) == (4, 1)
        rows[way] = sorted(tuple(r) for r in lakehouse.read(spark, path).select("id", "part", "note").collect())
        assert DeltaTable.forPath(spark, path).detail().first()["partitionColumns"] == ["part"]
    assert rows["small"] == rows["merge"] == (
        [(i, i % 2, None) for i in range(5)] + [(i, i % 2, "new") for i in range(5, 9)])
    # Again: nothing left to insert, and nothing inserted twice.
    lakehouse.insert_new(spark.range(3, 9).withColumn("part", F.col("id") % 2).withColumn("note", F.lit("new")),
                         str(tmp_path / "small"), keys=["id"], partition_by=["part"], batch_rows=6)
    assert lakehouse.read(spark, str(tmp_path / "small")).count() == 9


def test_a_date_larger_than_a_bin_is_written_as_several_files_and_a_small_one_as_one(spark, tmp_path):
    # Rows of one score date, as a night writes them; a 1 MB bin makes this date several bins.
    night = (spark.range(60_000).withColumn("person_id", F.sha2(F.col("id").cast("string"), 256))
             .withColumn("score_date", F.lit("2026-06-03").cast("date")))
    path = tmp_path / "scores"
    with settings_applied(spark, {"spark.databricks.delta.optimizeWrite.binSize": "1"}):
        lakehouse.replace_where(night, str(path), "score_date = '2026-06-03'", partition_by=["score_date"])
    assert len(list((path / "score_date=2026-06-03").glob("*.parquet"))) > 1
    # The next night is small: one file for its date, the first night's rows kept.
    lakehouse.replace_where(night.limit(100).withColumn("score_date", F.lit("2026-06-04").cast("date")), str(path),
                            "score_date = '2026-06-04'", partition_by=["score_date"])
    assert len(list((path / "score_date=2026-06-04").glob("*.parquet"))) == 1
    rows = {row["score_date"].isoformat(): row["count"]
            for row in lakehouse.read(spark, str(path)).groupBy("score_date").count().collect()}
    assert rows == {"2026-06-03": 60_000, "2026-06-04": 100}
