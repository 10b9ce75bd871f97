"""Propensity to convert end to end, side by side: the pipeline's Spark features and
gradient-boosted trees against pandas and scikit-learn, as a notebook user would write it.

    from propensity_vs_sklearn import compare
    compare(spark, cfg, run_date=date(2026, 6, 1), events_parquet=Path(".../events"))

Both start from the same silver events as Parquet and do the same work: the person
features as of each training date and the holdout date (the convert model's snapshot plan
from conf), the purchase label over the horizon, gradient-boosted trees with the conf's
settings (no search), and the AUC on the holdout. The pandas side runs in its own process
(`python bench/propensity_vs_sklearn.py --events ...`) so that its peak memory is its own;
it is given `--timeout` seconds and reported as not finishing if it takes longer.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.features.build import WINDOW_MEASURES, feature_columns

KEY = "convert_propensity"


def _settings(cfg) -> dict:
    model = cfg.get(f"models.{KEY}")
    return {"horizon_days": int(model["horizon_days"]), "snapshots": int(model["training_snapshots"]),
            "cadence_days": int(model["cadence_days"]), "seed": int(model["seed"]), "gbt": dict(model["gbt"]),
            "windows": [int(w) for w in cfg.get("features.windows_days")],
            "lookback_days": int(cfg.get("features.eligibility_lookback_days"))}


def compare(spark, cfg, run_date: date, events_parquet: Path, timeout: float = 3600) -> dict:
    settings = _settings(cfg)
    ours = _spark_side(spark, run_date, events_parquet, settings)
    command = [sys.executable, __file__, "--events", str(events_parquet), "--run-date", run_date.isoformat(),
               "--settings", json.dumps(settings)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"spark": ours, "pandas": {"finished": False, "why": f"not done after {timeout:.0f} s"}}
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"spark": ours, "pandas": {"finished": False, "why": why}}
    return {"spark": ours, "pandas": {"finished": True, **json.loads(done.stdout.strip().splitlines()[-1])}}


def _spark_side(spark, run_date: date, events_parquet: Path, settings: dict) -> dict:
    from pyspark.sql import DataFrame

    from pipelines.features.build import person_features, with_labels
    from pipelines.models.propensity import classifier_pipeline, holdout_auc, snapshot_plan
    from pipelines.core.reproducible import in_canonical_order

    started = time.monotonic()
    events = spark.read.parquet(str(events_parquet))
    plan = snapshot_plan(run_date, settings["horizon_days"], settings["cadence_days"], settings["snapshots"])

    def labelled(as_of: date):
        return (events.transform(person_features(as_of, settings["windows"], settings["lookback_days"]))
                .transform(with_labels(events, as_of, settings["horizon_days"])))
    training = reduce(DataFrame.unionByName, [labelled(as_of) for as_of in plan.training])
    training = in_canonical_order(training, "person_id", "as_of_date").cache()
    holdout = labelled(plan.holdout).cache()
    model = classifier_pipeline(feature_columns(settings["windows"]), settings["gbt"], settings["seed"]).fit(training)
    auc = holdout_auc(model, holdout)
    rows = training.count()
    training.unpersist()
    holdout.unpersist()
    return {"seconds": round(time.monotonic() - started, 2), "training_rows": rows, "holdout_auc": round(auc, 4)}


def pandas_features(events: pd.DataFrame, as_of: date, windows: list[int], lookback_days: int) -> pd.DataFrame:
    """The pipeline's person features (pipelines/features/build.py) in pandas; `event_date`
    as datetime64."""
    before = events[events["event_date"] < pd.Timestamp(as_of)].copy()
    before["days_ago"] = (pd.Timestamp(as_of) - before["event_date"]).dt.days
    before["is_purchase_n"] = before["is_purchase"].astype(float)
    before["one"] = 1.0
    before["purchase_days_ago"] = before["days_ago"].where(before["is_purchase"])
    columns = {}
    for days in sorted(windows):
        inside = before["days_ago"] <= days
        for name, column in WINDOW_MEASURES:
            before[f"{name}_{days}d"] = before[column].where(inside, 0.0)
            columns[f"{name}_{days}d"] = "sum"
    grouped = before.groupby("person_id").agg(
        days_since_last_event=("days_ago", "min"), tenure_days=("days_ago", "max"),
        last_purchase=("purchase_days_ago", "min"), lifetime_purchases=("is_purchase_n", "sum"),
        lifetime_revenue=("revenue", "sum"), **{c: (c, how) for c, how in columns.items()})
    recent = before.loc[before["days_ago"] <= lookback_days, ["person_id", "categories"]].explode("categories")
    grouped["distinct_categories"] = recent.groupby("person_id")["categories"].nunique()
    grouped["distinct_categories"] = grouped["distinct_categories"].fillna(0)
    grouped = grouped[grouped["days_since_last_event"] <= lookback_days]
    grouped["days_since_last_purchase"] = grouped["last_purchase"].fillna(lookback_days + 1)
    grouped["avg_order_value"] = np.where(grouped["lifetime_purchases"] > 0,
                                          grouped["lifetime_revenue"] / grouped["lifetime_purchases"].clip(lower=1),
                                          0.0)
    return grouped[feature_columns(windows)].astype(float)


def pandas_side(events_parquet: Path, run_date: date, settings: dict) -> dict:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from pipelines.models.propensity import snapshot_plan

    started = time.monotonic()
    events = pd.read_parquet(events_parquet)
    events["event_date"] = pd.to_datetime(events["event_date"])
    plan = snapshot_plan(run_date, settings["horizon_days"], settings["cadence_days"], settings["snapshots"])

    def labelled(as_of: date) -> pd.DataFrame:
        features = pandas_features(events, as_of, settings["windows"], settings["lookback_days"])
        start = pd.Timestamp(as_of)
        end = start + pd.Timedelta(days=settings["horizon_days"])
        when = events["event_date"]
        buyers = events.loc[events["is_purchase"] & (when >= start) & (when < end), "person_id"]
        features["label"] = features.index.isin(set(buyers)).astype(float)
        return features

    training = pd.concat([labelled(as_of) for as_of in plan.training])
    holdout = labelled(plan.holdout)
    gbt = settings["gbt"]
    model = GradientBoostingClassifier(n_estimators=int(gbt["max_iter"]), max_depth=int(gbt["max_depth"]),
                                       learning_rate=float(gbt["step_size"]),
                                       subsample=float(gbt["subsampling_rate"]), random_state=settings["seed"])
    inputs = feature_columns(settings["windows"])
    model.fit(training[inputs], training["label"])
    auc = roc_auc_score(holdout["label"], model.predict_proba(holdout[inputs])[:, 1])
    return {"seconds": round(time.monotonic() - started, 2), "training_rows": len(training),
            "holdout_auc": round(float(auc), 4),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description="the pandas + scikit-learn side of the comparison")
    parser.add_argument("--events", required=True)
    parser.add_argument("--run-date", required=True, type=date.fromisoformat)
    parser.add_argument("--settings", required=True, type=json.loads)
    args = parser.parse_args()
    print(json.dumps(pandas_side(Path(args.events), args.run_date, args.settings)))


if __name__ == "__main__":
    main()
