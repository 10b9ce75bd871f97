"""reports/<run-date>/index.html: the run at a glance, with plots (static HTML, no server)."""

from __future__ import annotations

import base64
import html
import io
import os

import pyspark.sql.functions as F

from pipelines import lakehouse
from pipelines.ops.context import RunContext


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _score_histogram(ctx: RunContext) -> str | None:
    """Bar chart of people per score (0-100): a 101-row aggregation, not the scores themselves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = ctx.cfg.table("scores")
    if not lakehouse.exists(ctx.spark, path):
        return None
    counts = (lakehouse.read(ctx.spark, path).where(F.col("score_date") == F.lit(ctx.run_date))
              .groupBy("score").count().orderBy("score").collect())
    if not counts:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([r["score"] for r in counts], [r["count"] for r in counts], width=1.0, color="#3b6ea8")
    ax.set_xlabel("convert score (0-100)")
    ax.set_ylabel("people")
    ax.set_title(f"Scores on {ctx.run_date}")
    image = _png(fig)
    plt.close(fig)
    return image


def _roc_plot(roc: list[list[float]], auc: float) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([p[0] for p in roc], [p[1] for p in roc], color="#3b6ea8", label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Holdout ROC")
    ax.legend(loc="lower right")
    image = _png(fig)
    plt.close(fig)
    return image


def _drift_plot(ctx: RunContext) -> str | None:
    """PSI per column from this run's drift rows in ops/dq_results (one row per column)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = ctx.cfg.table("dq_results")
    if not lakehouse.exists(ctx.spark, path):
        return None
    rows = (lakehouse.read(ctx.spark, path)
            .where((F.col("run_id") == ctx.run_id) & (F.col("suite") == "drift") & F.col("check").startswith("psi_"))
            .groupBy("check").agg(F.max_by("observed", "recorded_at").alias("observed")).collect())  # latest attempt
    if not rows:
        return None
    values = sorted(((r["check"][len("psi_"):], float(r["observed"].split()[-1])) for r in rows), key=lambda v: v[1])
    limits = ctx.cfg.get("quality.drift")
    fig, ax = plt.subplots(figsize=(6, 0.22 * len(values) + 1))
    ax.barh([v[0] for v in values], [v[1] for v in values], color="#3b6ea8")
    for level, colour in (("warning", "#d99a00"), ("error", "#c0392b")):
        if limits["score"].get(level) is not None:
            ax.axvline(float(limits["score"][level]), color=colour, linestyle="--", label=f"score {level}")
    ax.set_xlabel("population stability index, training vs. tonight")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right")
    image = _png(fig)
    plt.close(fig)
    return image


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
                                             if k not in ("roc", "quality_warnings"))
                             for step, out in outputs.items()})]
    if "holdout_auc_roc" in train:
        sections.append("<h2>Model: convert propensity</h2>")
        sections.append(_rows_table({k: train[k] for k in sorted(train) if k.startswith("holdout_")}))
        if train.get("roc"):
            sections.append(f"<img alt='ROC curve' src='data:image/png;base64,"
                            f"{_roc_plot(train['roc'], train['holdout_auc_roc'])}'>")
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
        sections.append(f"<img alt='population stability per column' src='data:image/png;base64,{drift}'>")
    histogram = _score_histogram(ctx)
    if histogram:
        sections.append("<h2>Score distribution</h2>")
        sections.append(f"<img alt='score histogram' src='data:image/png;base64,{histogram}'>")
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td{border:1px solid #ccc;padding:2px 8px}td.n{text-align:right}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Enrichment {ctx.run_date}</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
    path = os.path.join(folder, "index.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path
