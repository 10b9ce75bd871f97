"""The end-of-run summary: what a user reads first in the morning."""

from __future__ import annotations

from pipelines import lakehouse
from pipelines.ops.context import RunContext
from pipelines.quality.gate import data_docs_dir

SUMMARY_TABLES = ("events", "profiles", "quarantine", "identity_graph", "silver_events", "features",
                  "scores", "profile_enrichment")


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
    if "holdout_auc_roc" in train:
        lines.append(f"model: convert_propensity v{train['model_version']}"
                     f"{' (reused)' if train.get('reused') else ''}, holdout AUC-ROC "
                     f"{train['holdout_auc_roc']:.3f}, PR-AUC {train['holdout_pr_auc']:.3f}"
                     + (f", lift in the top decile {train['holdout_lift_top_decile']:.2f}, Brier "
                        f"{train['holdout_brier']:.4f}" if "holdout_lift_top_decile" in train else ""))
    if train.get("gate"):
        lines.append(f"model gate: {train['gate']}")
    checks = sum(int(out.get("dq_checks", 0)) for out in outputs.values())
    warnings = [w for out in outputs.values() for w in out.get("quality_warnings", [])]
    lines.append(f"quality: {checks} checks, {len(warnings)} warning(s); "
                 f"Data Docs: {data_docs_dir(ctx)}/index.html")
    lines.extend(f"  warning: {w}" for w in warnings)
    if "mlflow_run_id" in train:
        lines.append(f"mlflow run: {train['mlflow_run_id']} (tracking {ctx.cfg.mlflow_tracking_uri()})")
    lines.append(f"profile table: {ctx.cfg.table('profile_enrichment')}")
    lines.append(f"report: {report}")
    print("\n".join(lines))
