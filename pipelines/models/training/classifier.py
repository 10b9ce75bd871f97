"""Classifiers on labelled snapshots: the built-in propensities (gradient-boosted trees) and
the custom classifiers (a declared estimator or a function).

The settings come from conf or from a search judged in time order (fitted on the earlier
training snapshots, scored on the latest). That fit, a standardised logistic regression on
the same rows, and (with the customer-base features) a logistic regression on BG/NBD's
purchase log-odds alone are judged on the holdout; the one with the highest AUC-ROC (the
simpler on a tie) is registered, with the choice logged, its PR-AUC, lift in the top
decile, Brier score and calibration curve, and becomes champion through the AUC gate.
"""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion
import pyspark.sql.functions as F
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import DataFrame

from pipelines.core import plots
from pipelines.models import registry
from pipelines.models.customer_base import PURCHASE_LOG_ODDS
from pipelines.models.propensity import (SCORE_COLUMN, cumulative_gains, evaluate, fit_logistic,
                                         feature_importances, positive_probability,
                                         reliability_curve, roc_points, time_based_search)
from pipelines.models.training.lifecycle import Candidate, search_candidates
from pipelines.models.training.snapshots import SnapshotTrainer
from pipelines.quality import model_gates
from pipelines.quality.drift import reference_profile
from pipelines.quality.model_gates import Decision


# The candidates a classifier's training judges on its holdout.
ESTIMATOR = "estimator"                  # the configured estimator: the built-ins' trees, a custom model's own
BASELINE = "baseline"                    # the standardised logistic regression on the same rows
CUSTOMER_BASE = "customer_base"          # a logistic regression on BG/NBD's purchase log-odds alone
SIMPLEST_FIRST = [CUSTOMER_BASE, BASELINE, ESTIMATOR]


class ClassifierTrainer(SnapshotTrainer):
    ledger_metrics = ("holdout_auc_roc", "holdout_pr_auc", "holdout_brier", "holdout_lift_top_decile",
                      "holdout_baseline_auc_roc", "holdout_estimator_auc_roc", "holdout_customer_base_auc_roc",
                      "chosen_is_baseline", "chosen_is_customer_base",
                      "holdout_positive_rate", "holdout_rows", "training_rows",
                      "model_version", "promoted", "reused")

    def reused_outputs(self, version: ModelVersion) -> dict:
        return {"roc": registry.holdout_roc(version.run_id), "evaluation": registry.evaluation(version.run_id)}

    def fit(self) -> Candidate:
        ctx, inputs = self.ctx, self.inputs
        train = self.training_rows()
        holdout = self.holdout
        estimator, settings, search = self.fit_chosen(train)
        ctx.progress("fitting the logistic-regression baseline")
        fitted = {ESTIMATOR: estimator, BASELINE: fit_logistic(inputs, train)}
        if PURCHASE_LOG_ODDS in inputs:
            ctx.progress("fitting the logistic regression on BG/NBD's purchase log-odds alone")
            fitted[CUSTOMER_BASE] = fit_logistic([PURCHASE_LOG_ODDS], train)
        training_rows = float(train.count())
        train.unpersist()
        judged = {name: evaluate(model.transform(holdout)) for name, model in fitted.items()}
        chosen = best_candidate({name: j["holdout_auc_roc"] for name, j in judged.items()})
        model = fitted[chosen]
        chosen_name = {ESTIMATOR: self.what_fits, BASELINE: "logistic regression",
                       CUSTOMER_BASE: "BG/NBD purchase probability, recalibrated"}[chosen]
        holdout_scored = model.transform(holdout).cache()
        metrics = {**judged[chosen], **{f"holdout_{name}_auc_roc": j["holdout_auc_roc"] for name, j in judged.items()},
                   "chosen_is_baseline": float(chosen == BASELINE),
                   "chosen_is_customer_base": float(chosen == CUSTOMER_BASE)}
        roc = roc_points(holdout_scored)
        evaluation = {"gains": cumulative_gains(holdout_scored), "reliability": reliability_curve(holdout_scored),
                      "importances": feature_importances(model, model_inputs(model, inputs)), "chosen": chosen_name,
                      "candidates": {name: {k: j[k] for k in ("holdout_auc_roc", "holdout_brier")}
                                     for name, j in judged.items()}}
        # The reference for drift: the latest snapshot (the holdout), the population the model
        # was validated on. Older snapshots saw shorter histories, so they differ by construction.
        drift = reference_profile(holdout_scored.select(*inputs, positive_probability().alias(SCORE_COLUMN)),
                                  inputs + [SCORE_COLUMN], int(ctx.cfg.get("quality.drift.bins")))
        holdout_scored.unpersist()
        metrics["holdout_lift_top_decile"] = evaluation["gains"][0]["lift"]
        metrics["training_rows"] = training_rows
        ctx.progress("holdout AUC-ROC " + ", ".join(f"{judged[name]['holdout_auc_roc']:.3f} with the {what}"
                                                    for name, what in ((ESTIMATOR, self.what_fits),
                                                                       (BASELINE, "logistic regression"),
                                                                       (CUSTOMER_BASE, "BG/NBD log-odds"))
                                                    if name in judged)
                     + f": registering the {chosen_name}; "
                     f"PR-AUC {metrics['holdout_pr_auc']:.3f}, lift in the top decile "
                     f"{metrics['holdout_lift_top_decile']:.2f}, Brier {metrics['holdout_brier']:.4f}")
        params = {**self.run_params(settings), "chosen_candidate": chosen_name}
        return Candidate(
            metrics=metrics, params=params, log_model=self.spark_model_logger(model, 0.5),
            artifacts={**self.search_artifacts(search),
                       registry.ROC_ARTIFACT: {"roc": roc}, registry.EVALUATION_ARTIFACT: evaluation,
                       registry.DRIFT_ARTIFACT: drift},
            figures=_figures(roc, metrics, evaluation), outputs={"roc": roc, "evaluation": evaluation})

    def _search(self, train: DataFrame) -> tuple[dict, list[dict]]:
        """The settings to fit with: conf's, or the best of the search grid, judged on the
        latest training snapshot by models fitted on the earlier ones."""
        base = dict(self.model_cfg.get(self.spec.settings_key) or {})
        candidates = search_candidates(self.ctx, self.key, base, self.plan)
        if len(candidates) == 1:
            return candidates[0], []
        latest = F.col("as_of_date") == F.lit(self.plan.training[-1])
        fit = self.fitter()
        best, results = time_based_search(train.where(~latest), train.where(latest), candidates,
                                          lambda rows, settings: fit(rows, self.inputs, settings))
        self.ctx.progress("search: " + "; ".join(
            f"{_differences(r['params'], base)} AUC {r['validation_auc_roc']:.3f}" for r in results))
        return best, results

    def holdout_measure(self, scored: DataFrame) -> float:
        return evaluate(scored)["holdout_auc_roc"]

    def promotion(self, metrics: dict[str, float], champion: float | None, note: str) -> Decision:
        # A model may set its own promotion rules (models.<key>.promotion); conf's are the default.
        rules = {**self.ctx.cfg.get("quality.promotion"), **(self.model_cfg.get("promotion") or {})}
        return model_gates.promotion(metrics["holdout_auc_roc"], champion, float(rules["min_auc"]),
                                     float(rules["max_auc_drop"]), note)


def best_candidate(auc_by_candidate: dict[str, float]) -> str:
    """The candidate with the highest holdout AUC; of those tied, the simplest."""
    ordered = sorted(auc_by_candidate, key=SIMPLEST_FIRST.index)
    return max(ordered, key=lambda name: auc_by_candidate[name])


def model_inputs(model, inputs: list[str]) -> list[str]:
    """The inputs a fitted pipeline reads: its assembler's (a candidate may read fewer than
    the training set holds), else `inputs`."""
    first = model.stages[0] if getattr(model, "stages", None) else None
    return list(first.getInputCols()) if isinstance(first, VectorAssembler) else inputs


def _differences(params: dict, base: dict) -> str:
    changed = {k: v for k, v in params.items() if base.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "as configured"


def _figures(roc: list, metrics: dict, evaluation: dict) -> dict:
    figures = {
        "plots/holdout_roc.png": plots.roc_figure(roc, metrics["holdout_auc_roc"]),
        "plots/holdout_gains.png": plots.lift_figure(evaluation["gains"]),
        "plots/holdout_calibration.png": plots.reliability_figure(evaluation["reliability"], metrics["holdout_brier"]),
    }
    if evaluation["importances"]:   # models without tree importances have none to plot
        figures["plots/feature_importances.png"] = plots.importance_figure(evaluation["importances"])
    return figures
