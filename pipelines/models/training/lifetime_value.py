"""The lifetime-value model, several ways, judged on the same buyers:

    each counting model of conf (BG/NBD, MBG/NBD, Pareto/NBD) with Gamma-Gamma, fitted on
    the buyers' summaries as of the holdout date;
    gradient-boosted trees on the person features (pipelines/models/value_regressor.py);
    holdout = run_date - horizon: predictions over [holdout, run_date) vs. the revenue
    that happened there, for the buyers with a feature row at the holdout.

The way with the lowest MAE is chosen (on a tie the simpler: the counting models in the
order above, the regressor last), then refitted on the latest data for tonight's values:
its counting model and Gamma-Gamma on every purchase before the run date (kept only when
the fit converges to plausible parameters, else the holdout's fit stays), the regressor
on the buyers as of the holdout labelled up to the run date. It is registered as the
fitted parameters in a pyfunc model (it predicts from x, t_x, T and the mean spend, with
or without Spark), or as the regressor's Spark ML pipeline. P(alive) and expected
purchases come from the best counting model either way. The version becomes
champion through its own gate: the holdout total within `max_total_error` of the
actual, and a per-person MAE no worse than the champion's on the same holdout, the
champion judged by its own holdout fit (its refit has seen part of this holdout).
"""

from __future__ import annotations

from datetime import timedelta

import mlflow
import mlflow.pyfunc
import pandas as pd
import pyspark.sql.functions as F
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines.core.context import RunContext
from pipelines.core.reproducible import in_canonical_order
from pipelines.features.build import feature_columns
from pipelines.models import artifacts, registry
from pipelines.models.artifacts import REGRESSOR, probabilistic_method
from pipelines.models.counting_models import (COUNTING_MODELS, CountingModel, fit_counting_model, parameters_dict,
                                              parameters_from_dict)
from pipelines.models.lifetime_value import (BgNbd, collect_weighted, compress_for_bgnbd, compress_for_gamma_gamma,
                                             expected_spend, fit_gamma_gamma, holdout_errors, purchase_summary,
                                             with_lifetime_value)
from pipelines.models.specs import LIFETIME_VALUE, counting_models
from pipelines.models.training.lifecycle import Candidate, ConfiguredTrainer, Refusal
from pipelines.models.training.snapshots import PinnedEvents
from pipelines.models.value_regressor import labelled_buyers, non_negative_value, regressor_pipeline
from pipelines.quality.model_gates import Decision, value_promotion, value_refit, value_sufficiency


class LifetimeValueModel(mlflow.pyfunc.PythonModel):
    """The fitted parameters as an MLflow model: x, t_x, T (days), mean_spend ->
    p_alive, expected_purchases and expected_value over the horizon."""

    def __init__(self, parameters: dict, horizon_days: int):
        self.parameters = parameters
        self.horizon_days = horizon_days

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        counts, spend = parameters_from_dict(self.parameters)
        x, t_x, T = (model_input[c].to_numpy(dtype=float) for c in ("x", "t_x", "T"))
        purchases = counts.expected_purchases(float(self.horizon_days), x, t_x, T)
        per_purchase = expected_spend(spend, x, model_input["mean_spend"].to_numpy(dtype=float, na_value=float("nan")))
        return pd.DataFrame({"p_alive": counts.p_alive(x, t_x, T), "expected_purchases": purchases,
                             "expected_value": purchases * per_purchase})


class LifetimeValueTrainer(ConfiguredTrainer):
    key = LIFETIME_VALUE
    ledger_metrics = ("holdout_mae", "holdout_rmse", "holdout_total_predicted", "holdout_total_actual",
                      "holdout_total_ratio", "holdout_people", "refit_accepted",
                      *(f"holdout_{way}_{metric}" for way in (*map(probabilistic_method, COUNTING_MODELS), REGRESSOR)
                        for metric in ("mae", "total_ratio")),
                      "value_method_is_regressor", "model_version", "promoted", "reused")

    def __init__(self, ctx: RunContext, events: PinnedEvents):
        super().__init__(ctx)
        self.events = events
        self.horizon = int(self.model_cfg["horizon_days"])
        self.holdout = ctx.run_date - timedelta(days=self.horizon)
        self.counting_names = counting_models(ctx.cfg)
        self._cached: list[DataFrame] = []

    @property
    def purpose(self) -> str:
        return f"purchases and spend within {self.horizon} days"

    def reused_outputs(self, version: ModelVersion) -> dict:
        return {"parameters": registry.load_dict(version.run_id, artifacts.LIFETIME_VALUE_PARAMETERS)}

    def _keep(self, frame: DataFrame) -> DataFrame:
        self._cached.append(frame)
        return frame

    def prepare(self) -> Decision:
        self.summary = self._keep(self.events.frame.transform(purchase_summary(self.holdout))
                                  .persist(StorageLevel.MEMORY_AND_DISK))
        counts = self.summary.agg(F.count(F.lit(1)).alias("buyers"),
                                  F.sum(F.when(F.col("x") > 0, 1).otherwise(0)).alias("repeat")).first()
        return value_sufficiency(int(counts["buyers"]), int(counts["repeat"] or 0),
                                 int(self.ctx.cfg.get("quality.sufficiency.min_labels_per_class")))

    def fit(self) -> Candidate:
        ctx, events, horizon, holdout = self.ctx, self.events, self.horizon, self.holdout
        model_cfg = self.model_cfg
        decimals = int(model_cfg["spend_decimals"])
        bgnbd_data = collect_weighted(compress_for_bgnbd(self.summary), ["x", "t_x", "T"])
        spend_data = collect_weighted(compress_for_gamma_gamma(self.summary, decimals), ["x", "mean_spend"])
        counting: dict[str, CountingModel] = {}
        skipped: dict[str, str] = {}
        for name in self.counting_names:
            ctx.progress(f"fitting {name} on purchases before {holdout}")
            try:
                counting[name] = fit_counting_model(name, bgnbd_data)
            except ValueError as err:
                if name == BgNbd.name:
                    raise Refusal(Decision(allowed=False, check="data_sufficiency",
                                           rule="the likelihood fit converges", observed=str(err),
                                           reason=str(err))) from err
                skipped[name] = str(err)
                ctx.progress(f"warning: {name} is not a candidate tonight: {err}")
        try:
            spend = fit_gamma_gamma(spend_data)
        except ValueError as err:
            raise Refusal(Decision(allowed=False, check="data_sufficiency", rule="the likelihood fit converges",
                                   observed=str(err), reason=str(err))) from err
        inputs = feature_columns(events.windows)
        # Every way is judged on the buyers the nightly would value: a feature row at the holdout.
        self.judged = self._keep(labelled_buyers(events.frame, events.features(holdout), holdout, horizon)
                                 .persist(StorageLevel.MEMORY_AND_DISK))
        self.actual = self.judged.select("person_id", "actual_value", "actual_purchases")
        judged_summary = self._keep(self.summary.join(self.judged.select("person_id"), "person_id")
                                    .persist(StorageLevel.MEMORY_AND_DISK))
        by_method: dict[str, dict] = {}
        valued: dict[str, DataFrame] = {}
        for name, counts in counting.items():
            valued[name] = judged_summary.transform(with_lifetime_value(counts, spend, float(horizon))).cache()
            by_method[probabilistic_method(name)] = holdout_errors(valued[name], self.actual)
        # The counting model that values buyers best gives P(alive) and purchases on every way.
        best_counts = min(counting, key=lambda n: by_method[probabilistic_method(n)]["holdout_mae"])
        for name in [n for n in valued if n != best_counts]:
            valued.pop(name).unpersist()
        probabilistic = self._keep(valued[best_counts])
        earlier = holdout - timedelta(days=horizon)
        ctx.progress(f"fitting the gradient-boosted regressor on buyers as of {earlier}")
        training_rows = in_canonical_order(
            labelled_buyers(events.frame, events.features(earlier), earlier, horizon), "person_id")
        regressor = regressor_pipeline(inputs, model_cfg["regressor"], int(model_cfg["seed"])).fit(training_rows)
        by_method[REGRESSOR] = holdout_errors(_regressor_values(regressor, self.judged, probabilistic), self.actual)
        sample = self.judged.select(*inputs).limit(5).toPandas()
        # The lowest MAE wins; min keeps the first of equals, and the ways are in order of simplicity.
        method = min(by_method, key=lambda way: by_method[way]["holdout_mae"])
        metrics = {**by_method[method], **{f"holdout_{m}_{k}": by_method[m][f"holdout_{k}"]
                                          for m in by_method for k in ("mae", "rmse", "total_ratio")},
                   "value_method_is_regressor": float(method == REGRESSOR)}
        judged_parameters = parameters_dict(counting[best_counts], spend)
        ctx.progress(f"{len(bgnbd_data['x'])} distinct (x, t_x, T); {int(metrics['holdout_people'])} buyers "
                     f"judged, holdout MAE: " + ", ".join(f"{way} {by_method[way]['holdout_mae']:.2f}"
                                                          for way in by_method)
                     + f": {method} is used; predicted {metrics['holdout_total_predicted']:,.0f} vs actual "
                     f"{metrics['holdout_total_actual']:,.0f} over {horizon} days")
        # Tonight's values come from the chosen way refitted on everything up to the run date.
        parameters, refit = self._refit(judged_parameters)
        metrics["refit_accepted"] = float(refit.allowed)
        final_regressor = regressor
        if method == REGRESSOR:
            ctx.progress(f"refitting the regressor on buyers as of {holdout}, labelled up to {ctx.run_date}")
            final_regressor = regressor_pipeline(inputs, model_cfg["regressor"], int(model_cfg["seed"])).fit(
                in_canonical_order(self.judged, "person_id"))
        params = {"model": self.key, "run_date": ctx.run_date.isoformat(), "horizon_days": horizon,
                  "holdout_as_of": holdout.isoformat(), "silver_events_path": events.path,
                  "silver_events_version": events.version, "spend_decimals": decimals,
                  "distinct_bgnbd_tuples": len(bgnbd_data["x"]),
                  "distinct_spend_tuples": len(spend_data["x"]), "value_method": method,
                  "counting_model": best_counts, "features": ",".join(inputs),
                  "refit": "accepted" if refit.allowed else f"kept the holdout fit: {refit.reason}",
                  **{f"counting_model_skipped_{name}": why[:250] for name, why in skipped.items()},
                  **{f"regressor_{k}": v for k, v in dict(model_cfg["regressor"]).items()},
                  **_flat(parameters), **_flat(judged_parameters, "judged_")}
        spark_version = ctx.spark.version
        return Candidate(
            metrics=metrics, params=params,
            log_model=lambda name: _log_model(name, method, parameters, horizon, final_regressor, regressor, sample,
                                              spark_version),
            artifacts={artifacts.LIFETIME_VALUE_PARAMETERS: {**parameters, "horizon_days": horizon,
                                                             "value_method": method,
                                                             "judged": judged_parameters}},
            outputs={"parameters": parameters, "value_method": method})

    def _refit(self, judged: dict) -> tuple[dict, Decision]:
        """The judged counting model and Gamma-Gamma refitted on every purchase before the
        run date, when the fit converges to plausible parameters; else the holdout's fit.
        (The parameters, the refit gate's decision.)"""
        ctx = self.ctx
        counting = judged["counting_model"]
        # The same summaries and BG/NBD fit as the customer-base features of the run date (one pass).
        latest = self.events.customer_base.fitted(ctx.run_date)
        refitted, reason = None, latest.reason
        if latest.summary is not None:
            try:
                counts = latest.bgnbd if counting == BgNbd.name else fit_counting_model(
                    counting, collect_weighted(compress_for_bgnbd(latest.summary), ["x", "t_x", "T"]))
                refitted = parameters_dict(counts, latest.spend)
            except ValueError as err:
                reason = f"as of {ctx.run_date}: {err}"
        if refitted is None:
            decision = Decision(allowed=False, check="refit_plausible", rule="the likelihood fit converges",
                                observed=reason, reason=reason)
        else:
            decision = value_refit(refitted)
        if decision.allowed:
            ctx.progress(f"refitted {counting} and Gamma-Gamma on purchases before {ctx.run_date}: "
                         f"{decision.observed}")
            return refitted, decision
        ctx.progress(f"warning: the refit on purchases before {ctx.run_date} is not used ({decision.reason}); "
                     f"tonight's values come from the fit as of {self.holdout}")
        return judged, decision

    def measure_champion(self, champion: ModelVersion) -> tuple[float | None, str]:
        """The champion's MAE on this holdout's buyers, its own way."""
        value = artifacts.lifetime_value_model(champion.run_id, judged=True)
        valued = (self.summary.join(self.judged.select("person_id"), "person_id")
                  .transform(with_lifetime_value(value.counts, value.spend, float(self.horizon))))
        if value.method == REGRESSOR:
            valued = _regressor_values(artifacts.judged_regressor(champion.run_id, self.registered_name,
                                                                  champion.version), self.judged, valued)
        return holdout_errors(valued, self.actual)["holdout_mae"], f"champion v{champion.version}"

    def promotion(self, metrics: dict[str, float], champion: float | None, note: str) -> Decision:
        rules = self.model_cfg["promotion"]
        return value_promotion(metrics["holdout_mae"], metrics["holdout_total_ratio"], champion,
                               float(rules["max_total_error"]), float(rules["max_mae_increase"]), note)

    def release(self) -> None:
        for frame in self._cached:
            frame.unpersist()


def _log_model(name: str, method: str, parameters: dict, horizon: int, regressor, judged_regressor,
               sample: pd.DataFrame, spark_version: str):
    """Register the best way: the regressor's Spark ML pipeline (refitted on the latest
    labels; the one judged on the holdout is logged beside it, unregistered, for the next
    training to measure this version the same way), or the fitted parameters as a pyfunc
    model (the parameters artifact is logged either way: P(alive) and the expected
    purchases always come from the counting model)."""
    if method == REGRESSOR:
        signature = registry.signature(sample, [0.0] * len(sample))
        requirements = [f"pyspark=={spark_version}"]
        judged = registry.log_spark_model(judged_regressor, artifacts.JUDGED_REGRESSOR, signature=signature,
                                          pip_requirements=requirements)
        mlflow.set_tag(artifacts.JUDGED_REGRESSOR, judged.model_uri)
        return registry.log_spark_model(regressor, "model", registered_model_name=name, signature=signature,
                                        pip_requirements=requirements)
    example = pd.DataFrame({"x": [0.0, 2.0], "t_x": [0.0, 30.0], "T": [40.0, 90.0], "mean_spend": [None, 55.0]})
    model = LifetimeValueModel(parameters, horizon)
    return mlflow.pyfunc.log_model(name="model", python_model=model, registered_model_name=name,
                                   input_example=example,
                                   signature=infer_signature(example, model.predict(None, example)),
                                   pip_requirements=["scipy", "numpy", "pandas"])


def _regressor_values(regressor, rows: DataFrame, probabilistic: DataFrame) -> DataFrame:
    """The regressor's expected value beside the counting model's expected purchases and P(alive)."""
    return (regressor.transform(rows).select("person_id", non_negative_value().alias("expected_value"))
            .join(probabilistic.select("person_id", "expected_purchases", "p_alive"), "person_id"))


def _flat(parameters: dict, prefix: str = "") -> dict:
    """{"counting_model": "bgnbd", "bgnbd": {"r": ...}, ...} -> {"bgnbd_r": ..., ...} for MLflow params."""
    return {f"{prefix}{model}_{k}": v for model, values in parameters.items() if isinstance(values, dict)
            for k, v in values.items()}
