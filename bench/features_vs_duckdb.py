"""Feature building side by side: the pipeline's Spark aggregation against the same
aggregations as DuckDB SQL, over the same silver events written as Parquet.

    from features_vs_duckdb import compare, write_events
    write_events(spark, cfg, Path("bench/work/.../events"))
    compare(spark, cfg, as_of=date(2026, 6, 1), events=Path(".../events"), work=Path(".../duckdb"))

Both read the Parquet files and write their feature rows as Parquet; each is timed from
the start of its query to the end of its write, on every core of the machine, `runs`
times in turn. The first run of each pays for warming up: the JVM compiles Spark's
generated code as the rows flow, and at 10M events Spark's first run took about 9.4 s
where the next took 5.6-7.2 s. Both the first run and the median of all runs are kept;
a nightly job is one first run in a fresh JVM, a comparison of engines is the median.
The two outputs are then joined on person_id: the rows and every feature must agree (to
1e-9 relative), or the comparison says how many values differ.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Callable

import duckdb

from pipelines.core import lakehouse
from pipelines.core.config import Config
from pipelines.features.build import WINDOW_MEASURES, feature_columns, person_features

# Silver events columns the features read.
COLUMNS = ["person_id", "event_date", "is_purchase", "revenue", "product_views", "cart_adds", "page_views",
           "categories"]


def duckdb_features_sql(events_glob: str, as_of: date, windows: list[int], lookback_days: int) -> str:
    """The pipeline's person features (pipelines/features/build.py) as one DuckDB query."""
    windowed = ",\n".join(
        f"    sum(CASE WHEN days_ago <= {days} THEN {column} ELSE 0 END) AS {name}_{days}d"
        for days in sorted(windows) for name, column in WINDOW_MEASURES)
    return f"""
WITH before AS (
  SELECT person_id, event_date, date_diff('day', event_date, DATE '{as_of}') AS days_ago, is_purchase,
         CAST(is_purchase AS DOUBLE) AS is_purchase_n, revenue, product_views, cart_adds, page_views,
         1.0 AS one, categories
  FROM read_parquet('{events_glob}') WHERE event_date < DATE '{as_of}'
), per_person AS (
  SELECT person_id, min(days_ago) AS days_since_last_event, max(days_ago) AS tenure_days,
    min(days_ago) FILTER (WHERE is_purchase) AS last_purchase,
    sum(is_purchase_n) AS lifetime_purchases, sum(revenue) AS lifetime_revenue,
{windowed}
  FROM before GROUP BY person_id
), categories AS (
  SELECT person_id, count(DISTINCT category) AS distinct_categories
  FROM (SELECT person_id, unnest(categories) AS category FROM before WHERE days_ago <= {lookback_days})
  GROUP BY person_id
)
SELECT p.*, coalesce(c.distinct_categories, 0) AS distinct_categories,
  CAST(least(coalesce(p.last_purchase, {lookback_days + 1}), {lookback_days + 1}) AS DOUBLE)
    AS days_since_last_purchase,
  CASE WHEN p.lifetime_purchases > 0 THEN p.lifetime_revenue / p.lifetime_purchases ELSE 0 END AS avg_order_value
FROM per_person p LEFT JOIN categories c USING (person_id)
WHERE p.days_since_last_event <= {lookback_days}
"""


def write_events(spark, cfg: Config, path: Path) -> None:
    """The silver events the features read, as plain Parquet: the input every side-by-side shares."""
    shutil.rmtree(path, ignore_errors=True)
    lakehouse.read(spark, cfg.table("silver_events")).select(*COLUMNS).write.parquet(str(path))


def _timed_runs(run: Callable[[], None], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.monotonic()
        run()
        seconds.append(round(time.monotonic() - started, 2))
    return seconds


def compare(spark, cfg: Config, as_of: date, events: Path, work: Path, runs: int = 3) -> dict:
    """Seconds of each engine on the same Parquet events (first run and median of `runs`),
    their ratios and whether they agree."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spark_out, duck_out = work / "features-spark", work / "features-duckdb.parquet"
    windows = [int(w) for w in cfg.get("features.windows_days")]
    lookback = int(cfg.get("features.eligibility_lookback_days"))

    features_of = person_features(as_of, windows, lookback)
    spark_runs = _timed_runs(lambda: spark.read.parquet(str(events)).transform(features_of)
                             .write.mode("overwrite").parquet(str(spark_out)), runs)
    connection = duckdb.connect(config={"threads": os.cpu_count()})
    query = duckdb_features_sql(f"{events}/*.parquet", as_of, windows, lookback)
    duckdb_runs = _timed_runs(lambda: connection.execute(f"COPY ({query}) TO '{duck_out}' (FORMAT parquet)"), runs)

    features = feature_columns(windows)
    differing = " + ".join(
        f"CAST(abs(s.{f} - d.{f}) > 1e-9 * greatest(abs(d.{f}), 1) AS INTEGER)" for f in features)
    rows_spark, rows_duckdb, both, values_differing = connection.execute(f"""
        SELECT (SELECT count(*) FROM read_parquet('{spark_out}/*.parquet')),
               (SELECT count(*) FROM read_parquet('{duck_out}')),
               count(*), coalesce(sum({differing}), 0)
        FROM read_parquet('{spark_out}/*.parquet') s JOIN read_parquet('{duck_out}') d USING (person_id)
    """).fetchone()
    connection.close()
    spark_median, duckdb_median = statistics.median(spark_runs), statistics.median(duckdb_runs)
    return {"spark_seconds": round(spark_median, 2), "duckdb_seconds": round(duckdb_median, 2),
            "ratio": round(spark_median / duckdb_median, 2), "spark_runs": spark_runs, "duckdb_runs": duckdb_runs,
            "first_run_ratio": round(spark_runs[0] / duckdb_runs[0], 2), "people": rows_spark,
            "agree": rows_spark == rows_duckdb == both and values_differing == 0,
            "values_differing": int(values_differing), "rows_duckdb": rows_duckdb}
