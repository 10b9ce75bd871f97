"""Figures shared by the HTML report and the MLflow runs. Each takes small, already
aggregated numbers (curve points, bins, importances), never rows of a table.

    fig = roc_figure(points, auc=0.91)
    mlflow.log_figure(fig, "holdout_roc.png"); close(fig)
"""

from __future__ import annotations

import base64
import io
from typing import Sequence

# Figures built directly, not through pyplot: nothing is registered for display and no
# backend is chosen, so a notebook that runs a step keeps its own (inline) backend.
from matplotlib.figure import Figure

BLUE, GREY = "#3b6ea8", "#999999"


def as_png_base64(fig) -> str:
    """The figure as a base64 PNG, for an <img> in a self-contained HTML page."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def close(fig) -> None:
    fig.clear()   # frees the drawing; Figure objects are not tracked by pyplot


def _against_the_diagonal(title: str, xlabel: str, ylabel: str, diagonal: str):
    """A square figure for a curve read against y = x (chance, perfect calibration)."""
    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", label=diagonal)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig, ax


def roc_figure(points: Sequence[Sequence[float]], auc: float):
    fig, ax = _against_the_diagonal("Holdout ROC", "false positive rate", "true positive rate", "chance")
    ax.plot([p[0] for p in points], [p[1] for p in points], color=BLUE, label=f"AUC {auc:.3f}")
    ax.legend(loc="lower right")
    return fig


def reliability_figure(curve: Sequence[dict], brier: float):
    """Mean predicted probability against the observed rate, per probability bin."""
    fig, ax = _against_the_diagonal("Holdout calibration", "mean predicted probability", "observed rate",
                                    "perfectly calibrated")
    ax.plot([b["predicted"] for b in curve], [b["observed"] for b in curve], marker="o", color=BLUE,
            label=f"model (Brier {brier:.4f})")
    ax.legend(loc="upper left")
    return fig


def lift_figure(gains: Sequence[dict]):
    """Cumulative share of positives captured against the share of people targeted."""
    fig, ax = _against_the_diagonal("Holdout cumulative gains", "share of people, highest scores first",
                                    "share of positives captured", "random")
    ax.plot([0] + [g["targeted"] for g in gains], [0] + [g["captured"] for g in gains], marker="o", color=BLUE,
            label="model")
    ax.legend(loc="lower right")
    return fig


def importance_figure(importances: dict[str, float], top: int = 15):
    ranked = sorted(importances.items(), key=lambda item: item[1])[-top:]
    fig = Figure(figsize=(6, 0.25 * len(ranked) + 1))
    ax = fig.subplots()
    ax.barh([name for name, _ in ranked], [value for _, value in ranked], color=BLUE)
    ax.set_xlabel("importance (share of split gain)")
    ax.tick_params(axis="y", labelsize=7)
    return fig


def score_histogram_figure(counts: Sequence[tuple[int, int]], title: str):
    """People per score (score, people)."""
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    ax.bar([c[0] for c in counts], [c[1] for c in counts], width=1.0, color=BLUE)
    ax.set_xlabel("convert score (0-100)")
    ax.set_ylabel("people")
    ax.set_title(title)
    return fig


def psi_figure(values: Sequence[tuple[str, float]], score_limits: dict[str, float | None]):
    """Population stability index per column, with the score's warning and error lines."""
    fig = Figure(figsize=(6, 0.22 * len(values) + 1))
    ax = fig.subplots()
    ax.barh([v[0] for v in values], [v[1] for v in values], color=BLUE)
    for level, colour in (("warning", "#d99a00"), ("error", "#c0392b")):
        if score_limits.get(level) is not None:
            ax.axvline(float(score_limits[level]), color=colour, linestyle="--", label=f"score {level}")
    ax.set_xlabel("population stability index, training vs. tonight")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right")
    return fig


def predicted_actual_figure(deciles: Sequence[dict]):
    """Mean predicted against mean actual per group of people by prediction (a regressor's
    calibration)."""
    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    top = max([0.0] + [max(d["predicted"] or 0.0, d["actual"] or 0.0) for d in deciles])
    ax.plot([0, top], [0, top], color=GREY, linestyle="--", label="predicted = actual")
    ax.plot([d["predicted"] for d in deciles], [d["actual"] for d in deciles], marker="o", color=BLUE,
            label="model, per group by prediction")
    ax.set_xlabel("mean predicted")
    ax.set_ylabel("mean actual")
    ax.set_title("Holdout, predicted against actual")
    ax.legend(loc="upper left")
    return fig


def precision_figure(curves: dict[str, Sequence[float]], what: str):
    """Holdout precision at each cut k, one line per candidate (popularity grey)."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for method, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=method,
                color=GREY if method == "popularity" else None, linestyle="--" if method == "popularity" else "-")
    ax.set_xlabel(f"k ({what} recommended)")
    ax.set_ylabel("precision@k")
    ax.set_title("Holdout precision@k by candidate")
    ax.legend(loc="upper right")
    return fig
