"""reports/<run-date>/index.html: the run at a glance, with plots (static HTML, no server)."""

from __future__ import annotations

import html

import pyspark.sql.functions as F

from pipelines.core import lakehouse
from pipelines.core import plots
from pipelines.models.specs import propensity_specs
from pipelines.core.context import RunContext
from pipelines.ops.summary import quarantine_kinds


def _img(fig, alt: str) -> str:
    """An <img> holding the figure, which is closed."""
    data = plots.as_png_base64(fig)
    plots.close(fig)
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _score_histogram(ctx: RunContext, model_name: str) -> str | None:
    """Bar chart of people per score (0-100): a 101-row aggregation, not the scores themselves."""
    path = ctx.cfg.table("scores")
    if not lakehouse.exists(ctx.spark, path):
        return None
    counts = (lakehouse.read(ctx.spark, path)
              .where((F.col("score_date") == F.lit(ctx.run_date)) & (F.col("model_name") == F.lit(model_name)))
              .groupBy("score").count().orderBy("score").collect())
    if not counts:
        return None
    fig = plots.score_histogram_figure([(r["score"], r["count"]) for r in counts],
                                       f"{model_name} scores on {ctx.run_date}")
    return _img(fig, f"{model_name} score histogram")


def psi_observed(observed: str) -> float:
    """The PSI a drift outcome observed ("PSI 0.1234", with what became of the model after a `;`)."""
    return float(observed.split(";")[0].split()[-1])


def _drift_plot(ctx: RunContext, model_key: str) -> str | None:
    """PSI per column from this run's drift rows of one model in ops/dq_results."""
    path = ctx.cfg.table("dq_results")
    if not lakehouse.exists(ctx.spark, path):
        return None
    prefix = f"{model_key}.psi_"
    rows = (lakehouse.read(ctx.spark, path)
            .where((F.col("run_id") == ctx.run_id) & (F.col("suite") == "drift") & F.col("check").startswith(prefix))
            .groupBy("check").agg(F.max_by("observed", "recorded_at").alias("observed")).collect())  # latest attempt
    if not rows:
        return None
    values = sorted(((r["check"][len(prefix):], psi_observed(r["observed"])) for r in rows), key=lambda v: v[1])
    limits = ctx.cfg.get("quality.drift")["score"]
    fig = plots.psi_figure(values, {level: limits.get(level) for level in ("warning", "error")})
    return _img(fig, f"{model_key}: population stability per column")


def _model_section(key: str, trained: dict) -> list[str]:
    """Holdout metrics and plots of one model's training (or of the version reused)."""
    sections = [f"<h3>{html.escape(key)}</h3>",
                _rows_table({k: trained[k] for k in sorted(trained) if k.startswith("holdout_")})]
    if trained.get("gate"):
        sections.append(f"<p>Model gate: {html.escape(trained['gate'])}</p>")
    if trained.get("roc"):
        sections.append(_img(plots.roc_figure(trained["roc"], trained["holdout_auc_roc"]), f"{key} ROC curve"))
    if trained.get("precision_curves"):
        sections.append(_img(plots.precision_figure(trained["precision_curves"], key), f"{key} precision at k"))
    evaluation = trained.get("evaluation") or {}
    if evaluation:
        sections.append(_img(plots.lift_figure(evaluation["gains"]), f"{key} cumulative gains"))
        sections.append(_img(plots.reliability_figure(evaluation["reliability"], trained["holdout_brier"]),
                             f"{key} calibration"))
        sections.append(_img(plots.importance_figure(evaluation["importances"]), f"{key} feature importances"))
    return sections


def _rows_table(rows: dict) -> str:
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td class='n'>{'-' if v is None else v}</td></tr>"
                    for k, v in rows.items())
    return f"<table>{cells}</table>"


def write_report(ctx: RunContext, outputs: dict[str, dict], counts: dict) -> str:
    folder = f"{ctx.cfg.reports_dir().rstrip('/')}/{ctx.run_date.isoformat()}"
    trained = outputs.get("train", {}).get("models", {})
    sections = [f"<h1>Nightly enrichment, {ctx.run_date}</h1>",
                f"<p>run {html.escape(ctx.run_id)}</p>",
                "<h2>Rows per table</h2>", _rows_table(counts),
                "<h2>Steps</h2>",
                _rows_table({step: ", ".join(f"{k}={v}" for k, v in sorted(out.items())
                                             if isinstance(v, (int, float, str)) and "_quarantined[" not in k)
                             for step, out in outputs.items()})]
    kinds = quarantine_kinds(outputs.get("ingest", {}))
    if kinds:
        sections.append("<h2>Quarantine</h2><p>Records set aside tonight, by kind of problem; each row of "
                        "<code>bronze/quarantine</code> carries the detail and the raw record.</p>")
        sections.append(_rows_table({f"{kind}: {problem}": n for (kind, problem), n in kinds.items()}))
    skipped = {key: out["gate"] for key, out in trained.items()
               if out.get("gate") and out.get("champion_version") is None}
    kept = outputs.get("publish", {}).get("kept_from_earlier") or []
    if skipped or kept:
        sections.append("<h2>Skipped tonight</h2><p>Each insight below could not be learnt or scored tonight; the "
                        "others were published. Its profile columns keep their last values.</p>")
        sections.append("<ul>" + "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in skipped.items())
                        + "".join(f"<li>{html.escape(p)}: not scored tonight</li>" for p in kept
                                  if not any(p in k for k in skipped)) + "</ul>")
    if trained:
        sections.append("<h2>Models</h2>")
        for key, out in trained.items():
            if "holdout_auc_roc" in out or "holdout_mae" in out or "precision_curves" in out:
                sections.extend(_model_section(key, out))
    warnings = [w for out in outputs.values() for w in out.get("quality_warnings", [])]
    sections.append("<h2>Quality</h2>")
    sections.append(f"<p>{sum(int(o.get('dq_checks', 0)) for o in outputs.values())} checks, "
                    f"{len(warnings)} warning(s). <a href='../data_docs/index.html'>Great Expectations Data Docs</a>"
                    "</p>")
    if warnings:
        sections.append("<ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>")
    for spec in propensity_specs(ctx.cfg):
        drift = _drift_plot(ctx, spec.key)
        if drift:
            sections.append(f"<h3>Drift: {html.escape(spec.key)}</h3>")
            sections.append(drift)
    histograms = [h for h in (_score_histogram(ctx, spec.registered_name) for spec in propensity_specs(ctx.cfg)) if h]
    if histograms:
        sections.append("<h2>Score distributions</h2>")
        sections.extend(histograms)
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td{border:1px solid #ccc;padding:2px 8px}td.n{text-align:right}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Enrichment {ctx.run_date}</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
    path = f"{folder}/index.html"
    lakehouse.write_text(ctx.spark, path, page)
    return path
