"""`enrich models`: every model conf declares, built-in and custom, with its champion, its
latest version's holdout numbers and when it last trained; `enrich models validate`:
what is wrong with the custom definitions, before anything trains.

Listing reads the MLflow registry only (no Spark); validating starts Spark to analyse the
expressions against silver/events.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mlflow import MlflowClient

from pipelines.core import lakehouse
from pipelines.core.config import Config
from pipelines.models import custom, registry
from pipelines.models.specs import (AFFINITY, CONTENT_AFFINITY, LIFETIME_VALUE, OTHER_MODELS, PRODUCT_AFFINITY,
                                   SEGMENTS, all_specs, enabled, model_names, unlisted_models)

# What each kind of model is judged by, as the version tags name it, and how it is shown.
HEADLINES = {
    "propensity": (("holdout_auc_roc", "AUC"), ("holdout_pr_auc", "PR-AUC"), ("holdout_lift_top_decile", "lift@10%")),
    "regressor": (("holdout_rmse", "RMSE"), ("holdout_r2", "R2"), ("holdout_total_ratio", "predicted/actual")),
    LIFETIME_VALUE: (("holdout_mae", "MAE"), ("holdout_total_ratio", "predicted/actual")),
    AFFINITY: (("holdout_precision_at_k", "precision@k"), ("holdout_popularity_precision_at_k", "popularity")),
    PRODUCT_AFFINITY: (("holdout_precision_at_k", "precision@k"), ("holdout_ndcg_at_k", "NDCG@k"),
                       ("holdout_popularity_precision_at_k", "popularity")),
    CONTENT_AFFINITY: (("holdout_precision_at_k", "precision@k"), ("holdout_ndcg_at_k", "NDCG@k"),
                       ("holdout_popularity_precision_at_k", "popularity")),
    SEGMENTS: (("silhouette", "silhouette"), ("k", "k")),
}


@dataclass
class ModelEntry:
    model: str
    kind: str
    registered_name: str
    champion: int | None
    latest: int | None
    trained_for: str | None     # the run date the latest version was trained for
    metrics: dict[str, float]
    promotion: str | None       # "promoted", or why the latest version is not the champion


def entries(cfg: Config) -> list[ModelEntry]:
    """Every model in `enrich train`'s order; custom ones whose definition is broken are left
    out (`enrich models validate` says why)."""
    registry.connect(cfg)
    specs, _ = all_specs(cfg)
    declared = {s.key: (f"{s.definition.kind} (custom)" if s.is_custom else "propensity (built-in)",
                        s.registered_name, "regressor" if s.is_regressor else "propensity") for s in specs}
    declared.update({key: (f"{key.replace('_', ' ')} (built-in)", str(cfg.get(f"models.{key}.registered_name")), key)
                     for key in OTHER_MODELS if enabled(cfg, key)})
    return [_entry(key, *declared[key][:2], HEADLINES[declared[key][2]]) for key in model_names(cfg)
            if key in declared]


def _entry(key: str, kind: str, name: str, headline) -> ModelEntry:
    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    latest = max(versions, key=lambda v: int(v.version)) if versions else None
    champion = registry.champion(name)
    tags = latest.tags if latest else {}
    metrics = {label: float(tags[tag]) for tag, label in headline if tag in tags}
    return ModelEntry(model=key, kind=kind, registered_name=name,
                      champion=int(champion.version) if champion else None,
                      latest=int(latest.version) if latest else None,
                      trained_for=tags.get(registry.RUN_DATE_TAG), metrics=metrics,
                      promotion=tags.get(registry.PROMOTION_TAG))


def print_entries(models: list[ModelEntry], as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(m) for m in models], indent=2))
        return
    header = ("model", "kind", "champion", "latest", "trained for", "latest version's holdout")
    rows = [(m.model, m.kind, f"v{m.champion}" if m.champion else "-", f"v{m.latest}" if m.latest else "-",
             m.trained_for or "never",
             ", ".join(f"{label} {value:.4g}" for label, value in m.metrics.items())
             + ("" if m.promotion in (None, "promoted") else "  (not promoted)"))
            for m in models]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def validate(spark, cfg: Config, only: str | None) -> list[str]:
    """Every problem of the custom definitions (or of `only`), [] when all are sound.
    Expressions are analysed against silver/events' columns; when the table holds events,
    a label that holds for nobody over the whole history is a problem too."""
    specs, problems = all_specs(cfg)
    problems += unlisted_models(cfg)
    if only is not None:
        problems = [p for p in problems if p.startswith(f"models.{only}.") or f"{only!r}" in p
                    or p.startswith("models:")]
    chosen = [s for s in specs if s.is_custom and only in (None, s.key)]
    path = cfg.table("silver_events")
    if not lakehouse.exists(spark, path):
        return problems + [f"{path} does not exist yet, so the expressions cannot be checked: run `enrich ingest` "
                           "first"]
    events = lakehouse.read(spark, path)
    windows = cfg.get("features.windows_days")
    found = {}
    for spec in chosen:
        model_cfg = cfg.get(f"models.{spec.key}")
        found[spec.key] = custom.analyse(spec.definition, events, windows, model_cfg.get("params") or {},
                                         int(model_cfg["seed"]))
    # Only labels Spark could analyse are evaluated, all in one pass over the events.
    for key in custom.labels_never_held([s.definition for s in chosen if not found[s.key]], events):
        found[key] = [f"models.{key}.label holds for nobody over all of {path}: no events match what it asks for "
                      "(check the event types, categories and values it names)"]
    return problems + [problem for spec in chosen for problem in found[spec.key]]
