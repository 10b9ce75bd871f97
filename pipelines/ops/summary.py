"""The end-of-run summary: what a user reads first in the morning."""

from __future__ import annotations

from pipelines.core import lakehouse
from pipelines.core.context import RunContext
from pipelines.models.item_affinity import CANDIDATES
from pipelines.quality.gate import data_docs_dir

SUMMARY_TABLES = ("bronze_events", "bronze_profiles", "quarantine", "identity_graph", "silver_events", "features",
                  "scores", "predictions", "lifetime_value", "affinity", "product_affinity", "content_affinity",
                  "segments", "profile_enrichment")


def table_rows(ctx: RunContext) -> dict[str, int | None]:
    """Row count per table (None when a table does not exist yet)."""
    counts: dict[str, int | None] = {}
    for name in SUMMARY_TABLES:
        path = ctx.cfg.table(name)
        counts[name] = lakehouse.read(ctx.spark, path).count() if lakehouse.exists(ctx.spark, path) else None
    return counts


def print_summary(ctx: RunContext, outputs: dict[str, dict]) -> None:
    from pipelines.ops.report import write_report

    counts = table_rows(ctx)
    train = outputs.get("train", {})
    report = write_report(ctx, outputs, counts)
    lines = [f"nightly run {ctx.run_id} for {ctx.run_date}: done", "rows per table:"]
    for name, rows in counts.items():
        lines.append(f"  {ctx.cfg.get('lakehouse.tables')[name]:<28} {'-' if rows is None else rows:>10}")
    quarantined = outputs.get("ingest", {}).get("events_quarantined")
    if quarantined is not None:
        lines.append(f"events this run: {outputs['ingest']['events_records_in']} read, "
                     f"{outputs['ingest']['events_inserted']} new, "
                     f"{outputs['ingest']['events_already_present'] + outputs['ingest']['events_batch_duplicates']}"
                     f" duplicates, {quarantined} quarantined")
        for kind in ("events", "profiles"):
            if outputs["ingest"].get(f"{kind}_changed_redelivered"):
                lines.append(f"  {kind}: {outputs['ingest'][f'{kind}_changed_redelivered']:.0f} re-delivered under an "
                             "_id already held, with other content: the first delivery is kept")
    ingest = outputs.get("ingest", {})
    kinds = quarantine_kinds(ingest)
    if kinds:
        lines.append("  quarantined: " + "; ".join(f"{kind} {problem} {n}" for (kind, problem), n in kinds.items()))
    absent = [kind for kind in ("events", "profiles") if ingest.get(f"{kind}_landing_absent")]
    if absent:
        lines.append(f"landing: no {' and no '.join(absent)} folder; the night ran on what there is")
    for key, model in train.get("models", {}).items():
        lines.append(_model_line(key, model))
        if model.get("gate"):
            lines.append(f"  model gate: {model['gate']}")
    kept = outputs.get("publish", {}).get("kept_from_earlier")
    if kept:
        lines.append(f"skipped tonight, their profile columns kept from earlier nights: {', '.join(kept)}")
    checks = sum(int(out.get("dq_checks", 0)) for out in outputs.values())
    warnings = [w for out in outputs.values() for w in out.get("quality_warnings", [])]
    lines.append(f"quality: {checks} checks, {len(warnings)} warning(s); "
                 f"Data Docs: {data_docs_dir(ctx)}/index.html")
    lines.extend(f"  warning: {w}" for w in warnings)
    if train.get("models"):
        lines.append(f"mlflow: {ctx.cfg.mlflow_tracking_uri()}")
    lines.append(f"profile table: {ctx.cfg.table('profile_enrichment')}")
    lines.append(f"report: {report}")
    print("\n".join(lines))


def _model_line(key: str, model: dict) -> str:
    """One model: version, whether it was trained tonight, and its holdout numbers."""
    how = (" (not due for retraining)" if model.get("retrain") else " (reused)") if model.get("reused") else ""
    if "holdout_mae" in model:
        line = (f"model: {key} v{model['model_version']}{how}, holdout MAE {model['holdout_mae']:.2f}, "
                f"RMSE {model['holdout_rmse']:.2f}, predicted {model['holdout_total_predicted']:,.0f} vs actual "
                f"{model['holdout_total_actual']:,.0f} ({model['holdout_total_ratio']:.2f}x)")
        return line + (f", mlflow run {model['mlflow_run_id']}" if model.get("mlflow_run_id") else "")
    if "holdout_ndcg_at_k" in model:
        others = ", ".join(f"{m} {model[f'holdout_{m}_precision_at_k']:.3f}" for m in CANDIDATES
                           if f"holdout_{m}_precision_at_k" in model)
        line = (f"model: {key} v{model['model_version']}{how}, holdout precision@k "
                f"{model['holdout_precision_at_k']:.3f}, recall@k {model['holdout_recall_at_k']:.3f}, NDCG@k "
                f"{model['holdout_ndcg_at_k']:.3f}, coverage {model['holdout_coverage']:.2f} ({others})")
        return line + (f", mlflow run {model['mlflow_run_id']}" if model.get("mlflow_run_id") else "")
    if "holdout_precision_at_k" in model:
        line = (f"model: {key} v{model['model_version']}{how}, holdout precision@k "
                f"{model['holdout_precision_at_k']:.3f} (popularity {model['holdout_popularity_precision_at_k']:.3f}"
                + (f", ALS {model['holdout_als_precision_at_k']:.3f}" if "holdout_als_precision_at_k" in model else "")
                + f"), top-1 hit rate {model['holdout_hit_rate_top1']:.3f}")
        return line + (f", mlflow run {model['mlflow_run_id']}" if model.get("mlflow_run_id") else "")
    if "silhouette" in model:
        line = (f"model: {key} v{model['model_version']}{how}, {model['k']:.0f} segments, "
                f"silhouette {model['silhouette']:.3f}"
                + (f", mlflow run {model['mlflow_run_id']}" if model.get("mlflow_run_id") else ""))
        return "\n".join([line] + [f"  segment {s['segment_id']}: {s['segment_name']} ({s['people']} people)"
                                   for s in model.get("segments", [])])
    if "holdout_auc_roc" not in model:
        return f"model: {key}: no version"
    line = (f"model: {key} v{model['model_version']}{how}, holdout AUC-ROC {model['holdout_auc_roc']:.3f}, "
            f"PR-AUC {model['holdout_pr_auc']:.3f}")
    if "holdout_lift_top_decile" in model:
        line += f", lift in the top decile {model['holdout_lift_top_decile']:.2f}, Brier {model['holdout_brier']:.4f}"
    if model.get("chosen_is_baseline") or model.get("chosen_is_customer_base"):
        chosen = "the logistic regression" if model.get("chosen_is_baseline") else "BG/NBD's purchase log-odds"
        line += f" ({chosen}; the estimator had {model['holdout_estimator_auc_roc']:.3f})"
    elif "holdout_baseline_auc_roc" in model:
        line += f", baseline AUC {model['holdout_baseline_auc_roc']:.3f}"
    if model.get("mlflow_run_id"):
        line += f", mlflow run {model['mlflow_run_id']}"
    return line


def quarantine_kinds(ingest: dict) -> dict[tuple[str, str], int]:
    """(record kind, kind of problem) -> records quarantined, from the ingest step's outputs."""
    found = {}
    for key, n in sorted(ingest.items()):
        kind, _, rest = key.partition("_quarantined[")
        if rest.endswith("]") and n:
            found[(kind, rest[:-1])] = int(n)
    return found
