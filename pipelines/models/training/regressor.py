"""Custom regressors on labelled snapshots: the training set, its suites and the
sufficiency gate are the classifiers' (see snapshots.py), with "a positive target" as the
class. The chosen fit is judged on the holdout (MAE, RMSE, R^2 against the holdout mean,
and the total predicted over the total actual, where a model right on average but wrong per
person shows) and becomes champion through the regression gate.
"""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from pipelines.core import plots
from pipelines.models import artifacts, registry
from pipelines.models.propensity import feature_importances
from pipelines.models.regression import PREDICTION, prediction_deciles, regression_metrics
from pipelines.models.training.lifecycle import Candidate, search_candidates
from pipelines.models.training.snapshots import SnapshotTrainer
from pipelines.quality import model_gates
from pipelines.quality.drift import reference_profile
from pipelines.quality.model_gates import Decision


class RegressorTrainer(SnapshotTrainer):
    ledger_metrics = ("holdout_mae", "holdout_rmse", "holdout_r2", "holdout_total_ratio", "holdout_rows",
                      "training_rows", "model_version", "promoted", "reused")

    def fit(self) -> Candidate:
        ctx, inputs = self.ctx, self.inputs
        train = self.training_rows()
        holdout = self.holdout
        model, settings, search = self.fit_chosen(train)
        scored = model.transform(holdout).cache()
        metrics = regression_metrics(scored)
        deciles = prediction_deciles(scored)
        importances = feature_importances(model, inputs)
        drift = reference_profile(scored.select(*inputs, PREDICTION), inputs + [PREDICTION],
                                  int(ctx.cfg.get("quality.drift.bins")))
        scored.unpersist()
        metrics["training_rows"] = float(train.count())
        train.unpersist()
        ctx.progress(f"holdout MAE {metrics['holdout_mae']:.3f}, RMSE {metrics['holdout_rmse']:.3f}, "
                     f"R2 {metrics['holdout_r2']:.3f}, predicted/actual total {metrics['holdout_total_ratio']:.3f}")
        figures = {"plots/holdout_deciles.png": plots.predicted_actual_figure(deciles)}
        if importances:
            figures["plots/feature_importances.png"] = plots.importance_figure(importances)
        return Candidate(
            metrics=metrics, params=self.run_params(settings), log_model=self.spark_model_logger(model, 0.0),
            artifacts={**self.search_artifacts(search),
                       artifacts.DECILES: {"deciles": deciles, "importances": importances},
                       registry.DRIFT_ARTIFACT: drift},
            figures=figures)

    def _search(self, train: DataFrame) -> tuple[dict, list[dict]]:
        """Conf's params, or the candidate of `search` with the lowest RMSE on the latest training
        snapshot when fitted on the earlier ones."""
        candidates = search_candidates(self.ctx, self.key, dict(self.model_cfg.get("params") or {}), self.plan)
        if len(candidates) == 1:
            return candidates[0], []
        latest = F.col("as_of_date") == F.lit(self.plan.training[-1])
        fit = self.fitter()
        results = []
        for settings in candidates:
            model = fit(train.where(~latest), self.inputs, settings)
            rmse = regression_metrics(model.transform(train.where(latest)))["holdout_rmse"]
            results.append({"params": settings, "validation_rmse": rmse})
        self.ctx.progress("search: " + "; ".join(f"{r['params']} RMSE {r['validation_rmse']:.3f}" for r in results))
        return min(results, key=lambda r: r["validation_rmse"])["params"], results

    def holdout_measure(self, scored: DataFrame) -> float:
        return regression_metrics(scored)["holdout_rmse"]

    def promotion(self, metrics: dict[str, float], champion: float | None, note: str) -> Decision:
        rules = {**self.ctx.cfg.get("quality.regression_promotion"), **(self.model_cfg.get("promotion") or {})}
        return model_gates.regression_promotion(metrics["holdout_r2"], metrics["holdout_rmse"], champion,
                                                float(rules["min_r2"]), float(rules["max_rmse_increase"]), note)
