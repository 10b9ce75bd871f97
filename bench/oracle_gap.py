"""Where the gap to the oracle is: would a person's whole activity, not only their
purchases, say more about who is still a customer?

    .venv/bin/python bench/oracle_gap.py --root lakehouse

Reads the lakehouse of `make demo` after its nightly (the training sets it stored, silver
events). For each propensity model it refits the gradient-boosted trees with the
trainer's default settings on the stored training rows, as trained (person features and
the customer-base features) and with Pareto/NBD's P(alive) and expected count over the
horizon fitted on each person's days with any event ("activity") and on their purchase
days, each as of the snapshot; it also ranks the holdout by each of those quantities
alone. For lifetime value it values the holdout buyers with Pareto/NBD on purchases, then
with P(alive) and the drop-out process taken from the activity fit. Writes
bench/results/oracle_gap.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyspark.sql.functions as F
from pyspark.ml import Pipeline
from pyspark.ml.classification import GBTClassifier
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import DataFrame

from pipelines.core import lakehouse
from pipelines.core.config import load_config
from pipelines.core.session import build_session
from pipelines.features.build import person_features
from pipelines.models.counting_models import ParetoNbd, fit_counting_model
from pipelines.models.customer_base import CUSTOMER_BASE_COLUMNS
from pipelines.models.lifetime_value import (collect_weighted, compress_for_bgnbd, compress_for_gamma_gamma,
                                             expected_spend, fit_gamma_gamma, purchase_summary)
from pipelines.models.specs import model_specs
from pipelines.models.value_regressor import labelled_buyers
from provenance import machine, measured_stamp

HERE = Path(__file__).resolve().parent
KINDS = ("activity", "purchases")


def activity_summary(events: DataFrame, as_of) -> DataFrame:
    """x, t_x, T over the days with any event before `as_of`, as purchase_summary counts purchase days."""
    days = events.where(F.col("event_date") < F.lit(as_of)).select("person_id", "event_date").distinct()
    per = days.groupBy("person_id").agg(F.min("event_date").alias("first"), F.max("event_date").alias("last"),
                                        F.count(F.lit(1)).alias("days"))
    return per.select("person_id", (F.col("days") - 1).cast("double").alias("x"),
                      F.datediff("last", "first").cast("double").alias("t_x"),
                      F.datediff(F.lit(as_of), "first").cast("double").alias("T"))


def summary_of(events: DataFrame, kind: str, as_of) -> DataFrame:
    if kind == "activity":
        return activity_summary(events, as_of)
    return events.transform(purchase_summary(as_of)).select("person_id", "x", "t_x", "T")


def pareto_quantities(spark, events: DataFrame, kind: str, as_of, horizon: int) -> DataFrame:
    """Per person as of the date: P(alive) and the expected count over the horizon, from
    Pareto/NBD fitted on the summaries of that date (the summaries go to the driver: this
    is a measurement on the demo's size, not a nightly step)."""
    rows = summary_of(events, kind, as_of).cache()
    model = fit_counting_model("pareto_nbd", collect_weighted(compress_for_bgnbd(rows), ["x", "t_x", "T"]))
    summary = rows.toPandas()
    rows.unpersist()
    x, t_x, T = (summary[c].to_numpy(float) for c in ("x", "t_x", "T"))
    summary[f"{kind}_p_alive"] = model.p_alive(x, t_x, T)
    summary[f"{kind}_expected"] = model.expected_purchases(float(horizon), x, t_x, T)
    return spark.createDataFrame(summary[["person_id", f"{kind}_p_alive", f"{kind}_expected"]]) \
        .withColumn("as_of_date", F.lit(as_of).cast("date"))


def propensity_gap(spark, cfg, events: DataFrame, sets: DataFrame, key: str, horizon: int, inputs: list[str]) -> dict:
    rows = sets.where(F.col("model") == key)
    latest = rows.agg(F.max("training_run_date")).first()[0]
    rows = rows.where(F.col("training_run_date") == F.lit(latest))
    dates = [r[0] for r in rows.select("as_of_date").distinct().orderBy("as_of_date").collect()]
    added = []
    for kind in KINDS:
        parts = [pareto_quantities(spark, events, kind, d, horizon) for d in dates]
        frame = parts[0]
        for part in parts[1:]:
            frame = frame.unionByName(part)
        rows = rows.join(frame, ["person_id", "as_of_date"], "left")
        added += [f"{kind}_p_alive", f"{kind}_expected"]
    rows = rows.fillna(0.0, subset=added).cache()
    train, holdout = rows.where(F.col("split") == "train"), rows.where(F.col("split") == "holdout")
    gbt = cfg.get(f"models.{key}.gbt")
    out = {"holdout_rows": holdout.count(), "trees": {}, "alone": {}}
    for label, columns in (("as trained", inputs), ("with the activity and purchase Pareto/NBD", inputs + added)):
        pipeline = Pipeline(stages=[
            VectorAssembler(inputCols=columns, outputCol="features", handleInvalid="keep"),
            GBTClassifier(labelCol="label", featuresCol="features", maxIter=int(gbt["max_iter"]),
                          maxDepth=int(gbt["max_depth"]), stepSize=float(gbt["step_size"]),
                          subsamplingRate=float(gbt["subsampling_rate"]), seed=int(cfg.get(f"models.{key}.seed")))])
        scored = pipeline.fit(train).transform(holdout)
        out["trees"][label] = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="probability") \
            .evaluate(scored)
    churn = cfg.get(f"models.{key}.target") == "churn"
    for column in [*added, "bgnbd_purchase_log_odds"]:
        # Churn is the absence of a purchase: a quantity that rises with buying ranks it reversed.
        ranked = holdout.withColumn("_score", -F.col(column) if churn else F.col(column))
        out["alone"][column] = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="_score") \
            .evaluate(ranked)
    rows.unpersist()
    return out


def value_gap(cfg, events: DataFrame) -> dict:
    run_date = lakehouse.read(events.sparkSession, cfg.table("lifetime_value")).agg(F.max("score_date")).first()[0]
    horizon = int(cfg.get("models.lifetime_value.horizon_days"))
    holdout = run_date - timedelta(days=horizon)
    features = events.transform(person_features(holdout, cfg.get("features.windows_days"),
                                                int(cfg.get("features.eligibility_lookback_days"))))
    judged = labelled_buyers(events, features, holdout, horizon).select("person_id", "actual_value")
    purchases = events.transform(purchase_summary(holdout))
    activity = activity_summary(events, holdout).select(
        "person_id", *[F.col(c).alias(f"activity_{c}") for c in ("x", "t_x", "T")])
    rows = judged.join(purchases, "person_id").join(activity, "person_id").toPandas()
    counts = fit_counting_model("pareto_nbd", collect_weighted(compress_for_bgnbd(purchases), ["x", "t_x", "T"]))
    lives = fit_counting_model("pareto_nbd", collect_weighted(
        compress_for_bgnbd(activity_summary(events, holdout)), ["x", "t_x", "T"]))
    spend_model = fit_gamma_gamma(collect_weighted(compress_for_gamma_gamma(
        purchases, int(cfg.get("models.lifetime_value.spend_decimals"))), ["x", "mean_spend"]))
    x, t_x, T = (rows[c].to_numpy(float) for c in ("x", "t_x", "T"))
    ax, at_x, aT = (rows[f"activity_{c}"].to_numpy(float) for c in ("x", "t_x", "T"))
    spend = expected_spend(spend_model, x, rows["mean_spend"].to_numpy(float, na_value=np.nan))
    actual = rows["actual_value"].to_numpy(float)
    on_purchases = counts.expected_purchases(float(horizon), x, t_x, T) * spend
    # Alive and lasting as the activity says; the purchase rate as the purchases say (Gamma(r + x, alpha + T)).
    lasting = ParetoNbd(counts.r, counts.alpha, lives.s, lives.beta)
    survive = lasting.expected_purchases(float(horizon), x, t_x, T) / lasting.p_alive(x, t_x, T)
    on_activity = lives.p_alive(ax, at_x, aT) * survive * spend
    return {"buyers": len(rows), "holdout_as_of": holdout.isoformat(),
            "mae": {"Pareto/NBD on purchases": float(np.abs(on_purchases - actual).mean()),
                    "Pareto/NBD, P(alive) from all activity": float(np.abs(on_activity - actual).mean()),
                    "nothing (0 for everyone)": float(np.abs(actual).mean())},
            "total_ratio": {"Pareto/NBD on purchases": float(on_purchases.sum() / actual.sum()),
                            "Pareto/NBD, P(alive) from all activity": float(on_activity.sum() / actual.sum())}}


def markdown(results: dict, oracle: dict) -> str:
    lines = ["# Where the gap to the oracle is", "",
             f"{results['machine']}; the demo's lakehouse (bench/oracle_gap.py). Trees refitted with each "
             "model's default settings on its stored training rows; AUC-ROC on the same holdout rows.", "",
             "| model | as trained | with activity and purchase Pareto/NBD | best quantity alone | oracle |",
             "|---|---:|---:|---:|---:|"]
    for key, gap in results["propensity"].items():
        best = max(gap["alone"], key=gap["alone"].get)
        lines.append(f"| {key} | {gap['trees']['as trained']:.4f} | "
                     f"{gap['trees']['with the activity and purchase Pareto/NBD']:.4f} | "
                     f"{gap['alone'][best]:.4f} ({best}) | {oracle.get(key, {}).get('oracle', float('nan')):.4f} |")
    value = results["lifetime_value"]
    lines += ["", f"Lifetime value, {value['buyers']:,} buyers as of {value['holdout_as_of']}:", "",
              "| way | MAE | predicted / actual |", "|---|---:|---:|"]
    lines += [f"| {way} | {mae:.2f} | {value['total_ratio'].get(way, float('nan')):.2f} |"
              for way, mae in value["mae"].items()]
    oracle_mae = oracle.get("lifetime_value", {}).get("oracle")
    if oracle_mae:
        lines.append(f"| the oracle (latent rate, lifetime and spend) | {oracle_mae:.2f} | - |")
    lines += ["", f"Measured: {results['measured']['date']} at {results['measured']['commit']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="lakehouse")
    args = parser.parse_args()
    cfg = load_config("local", overrides=[f"lakehouse.root={args.root}"])
    spark = build_session(cfg)
    events = lakehouse.read(spark, cfg.table("silver_events")).cache()
    sets = lakehouse.read(spark, cfg.table("training_sets"))
    windows = cfg.get("features.windows_days")
    results = {"machine": machine(), "measured": measured_stamp(), "propensity": {}}
    for spec in model_specs(cfg):
        if spec.is_custom:
            continue
        inputs = spec.inputs(windows) + list(CUSTOMER_BASE_COLUMNS)
        print(f"{spec.key}: refitting with and without the activity quantities ...", flush=True)
        results["propensity"][spec.key] = propensity_gap(spark, cfg, events, sets, spec.key, spec.horizon_days, inputs)
    print("lifetime value: Pareto/NBD on purchases and on all activity ...", flush=True)
    results["lifetime_value"] = value_gap(cfg, events)
    oracle_file = HERE / "results" / "model_quality.json"
    oracle = json.loads(oracle_file.read_text()) if oracle_file.exists() else {}
    out = HERE / "results"
    (out / "oracle_gap.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results, oracle)
    (out / "oracle_gap.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
