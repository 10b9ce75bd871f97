"""Lifetime-value fitting side by side: the pipeline's Spark-summarised BG/NBD and
Gamma-Gamma against the `lifetimes` library on pandas, on the same purchases.

    from ltv_vs_lifetimes import compare
    compare(spark, cfg, as_of=date(2026, 6, 1), events=Path(".../events"))

Both start from the same silver events as Parquet (features_vs_duckdb.write_events) and
end with fitted parameters:

- the pipeline: per-person summaries (x, t_x, T, mean spend) in Spark, compressed to unique
  tuples with counts, maximum likelihood on the driver (pipelines/models/lifetime_value.py);
- a notebook user: pandas reads the purchases, `summary_data_from_transaction_data` makes the
  same summaries (days as the period), `BetaGeoFitter` and `GammaGammaFitter` fit them.

The parameters must agree: the largest relative difference is reported, and they agree when
it is below 5e-4 (the same three significant digits).
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

from pipelines.core.config import Config
from pipelines.models.lifetime_value import (collect_weighted, compress_for_bgnbd, compress_for_gamma_gamma, fit_bgnbd,
                                             fit_gamma_gamma, purchase_summary)

AGREEMENT = 5e-4


def compare(spark, cfg: Config, as_of: date, events: Path) -> dict:
    """Seconds of each side, split into making the summaries (from reading the Parquet to
    per-person or compressed rows in memory) and fitting them, the parameters and whether they agree."""
    decimals = int(cfg.get("models.lifetime_value.spend_decimals"))

    started = time.monotonic()
    summary = spark.read.parquet(str(events)).transform(purchase_summary(as_of)).cache()
    bgnbd_data = collect_weighted(compress_for_bgnbd(summary), ["x", "t_x", "T"])
    spend_data = collect_weighted(compress_for_gamma_gamma(summary, decimals), ["x", "mean_spend"])
    summary.unpersist()
    people = int(bgnbd_data["weight"].sum())   # every buyer is in exactly one tuple
    spark_summary_seconds = time.monotonic() - started
    started = time.monotonic()
    bgnbd, spend = fit_bgnbd(bgnbd_data), fit_gamma_gamma(spend_data)
    spark_fit_seconds = time.monotonic() - started
    ours = {"r": bgnbd.r, "alpha": bgnbd.alpha, "a": bgnbd.a, "b": bgnbd.b,
            "p": spend.p, "q": spend.q, "gamma": spend.gamma}

    started = time.monotonic()
    frame = pd.read_parquet(events, columns=["person_id", "event_date", "is_purchase", "revenue"],
                            filters=[("is_purchase", "==", True), ("event_date", "<", as_of)])
    rfm = summary_data_from_transaction_data(frame, "person_id", "event_date", monetary_value_col="revenue",
                                             observation_period_end=pd.Timestamp(as_of), freq="D")
    library_summary_seconds = time.monotonic() - started
    started = time.monotonic()
    beta_geo = BetaGeoFitter().fit(rfm["frequency"], rfm["recency"], rfm["T"])
    repeat = rfm[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)]
    gamma_gamma = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    library_fit_seconds = time.monotonic() - started
    theirs = {**{k: float(beta_geo.params_[k]) for k in ("r", "alpha", "a", "b")},
              "p": float(gamma_gamma.params_["p"]), "q": float(gamma_gamma.params_["q"]),
              "gamma": float(gamma_gamma.params_["v"])}

    spark_seconds = spark_summary_seconds + spark_fit_seconds
    library_seconds = library_summary_seconds + library_fit_seconds
    differences = {k: abs(ours[k] - theirs[k]) / abs(theirs[k]) for k in ours}
    return {"people": people, "library_people": len(rfm),
            "bgnbd_tuples": len(bgnbd_data["x"]), "gamma_gamma_tuples": len(spend_data["x"]),
            "spark_seconds": round(spark_seconds, 2), "library_seconds": round(library_seconds, 2),
            "speedup": round(library_seconds / spark_seconds, 2),
            "spark_summary_seconds": round(spark_summary_seconds, 2), "spark_fit_seconds": round(spark_fit_seconds, 2),
            "library_summary_seconds": round(library_summary_seconds, 2),
            "library_fit_seconds": round(library_fit_seconds, 2),
            "fit_speedup": round(library_fit_seconds / spark_fit_seconds, 1),
            "ours": ours, "library": theirs, "max_relative_difference": max(differences.values()),
            "agree": max(differences.values()) < AGREEMENT}
