"""reports/<run-date>/index.html: the run at a glance, with plots (static HTML, no server)."""

from __future__ import annotations

import html
import os

import pyspark.sql.functions as F

from pipelines import lakehouse
from pipelines.ops import plots
from pipelines.ops.context import RunContext


def _img(fig, alt: str) -> str:
    """An <img> holding the figure, which is closed."""
    data = plots.as_png_base64(fig)
    plots.close(fig)
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _score_histogram(ctx: RunContext) -> str | None:
    """Bar chart of people per score (0-100): a 101-row aggregation, not the scores themselves."""
    path = ctx.cfg.table("scores")
    if not lakehouse.exists(ctx.spark, path):
        return None
    counts = (lakehouse.read(ctx.spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
              .groupBy("score").count().orderBy("score").collect())
    if not counts:
        return None
    fig = plots.score_histogram_figure([(r["score"], r["count"]) for r in counts], f"Scores on {ctx.run_date}")
    return _img(fig, "score histogram")


def _drift_plot(ctx: RunContext) -> str | None:
    """PSI per column from this run's drift rows in ops/dq_results (one row per column)."""
    path = ctx.cfg.table("dq_results")
    if not lakehouse.exists(ctx.spark, path):
        return None
    rows = (lakehouse.read(ctx.spark, path)
            .where((F.col("run_id") == ctx.run_id) & (F.col("suite") == "drift") & F.col("check").startswith("psi_"))
            .groupBy("check").agg(F.max_by("observed", "recorded_at").alias("observed")).collect())  # latest attempt
    if not rows:
        return None
    values = sorted(((r["check"][len("psi_"):], float(r["observed"].split()[-1])) for r in rows), key=lambda v: v[1])
    limits = ctx.cfg.get("quality.drift")["score"]
    fig = plots.psi_figure(values, {level: limits.get(level) for level in ("warning", "error")})
    return _img(fig, "population stability per column")


def _rows_table(rows: dict) -> str:
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td class='n'>{'-' if v is None else v}</td></tr>"
                    for k, v in rows.items())
    return f"<table>{cells}</table>"


def write_report(ctx: RunContext, outputs: dict[str, dict], counts: dict) -> str:
    folder = os.path.join(ctx.cfg.reports_dir(), ctx.run_date.isoformat())
    os.makedirs(folder, exist_ok=True)
    train = outputs.get("train", {})
    sections = [f"<h1>Nightly enrichment, {ctx.run_date}</h1>",
                f"<p>run {html.escape(ctx.run_id)}</p>",
                "<h2>Rows per table</h2>", _rows_table(counts),
                "<h2>Steps</h2>",
                _rows_table({step: ", ".join(f"{k}={v}" for k, v in sorted(out.items())
                                             if k not in ("roc", "evaluation", "quality_warnings"))
                             for step, out in outputs.items()})]
    if "holdout_auc_roc" in train:
        sections.append("<h2>Model: convert propensity</h2>")
        sections.append(_rows_table({k: train[k] for k in sorted(train) if k.startswith("holdout_")}))
        if train.get("roc"):
            sections.append(_img(plots.roc_figure(train["roc"], train["holdout_auc_roc"]), "ROC curve"))
        evaluation = train.get("evaluation") or {}
        if evaluation:
            sections.append(_img(plots.lift_figure(evaluation["gains"]), "cumulative gains"))
            sections.append(_img(plots.reliability_figure(evaluation["reliability"], train["holdout_brier"]),
                                 "calibration"))
            sections.append(_img(plots.importance_figure(evaluation["importances"]), "feature importances"))
    warnings = [w for out in outputs.values() for w in out.get("quality_warnings", [])]
    sections.append("<h2>Quality</h2>")
    sections.append(f"<p>{sum(int(o.get('dq_checks', 0)) for o in outputs.values())} checks, "
                    f"{len(warnings)} warning(s). <a href='../data_docs/index.html'>Great Expectations Data Docs</a>"
                    "</p>")
    if train.get("gate"):
        sections.append(f"<p>Model gate: {html.escape(train['gate'])}</p>")
    if warnings:
        sections.append("<ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>")
    drift = _drift_plot(ctx)
    if drift:
        sections.append(drift)
    histogram = _score_histogram(ctx)
    if histogram:
        sections.append("<h2>Score distribution</h2>")
        sections.append(histogram)
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td{border:1px solid #ccc;padding:2px 8px}td.n{text-align:right}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Enrichment {ctx.run_date}</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
    path = os.path.join(folder, "index.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path
