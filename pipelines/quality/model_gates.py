"""The two gates around training: enough data before it, a good enough model after it.

Pure decisions on small numbers; the caller gathers the numbers in Spark and acts:

    decision = sufficiency(counts, min_per_class=500, ...)
    if not decision.allowed: ...   # training refused, the champion stays
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Mapping


@dataclass(frozen=True)
class Decision:
    allowed: bool
    check: str        # data_sufficiency | promotion | refit_plausible | ...
    rule: str         # the rule, e.g. "min_auc=0.65, max_auc_drop=0.0"
    observed: str     # what was measured
    reason: str = ""  # why it was refused (empty when allowed)


def sufficiency(class_counts: Mapping[str, Mapping[float, int]], min_per_class: int,
                first_event: date | None, last_event: date | None, first_as_of: date, run_date: date,
                min_history_days: int, max_staleness_days: int) -> Decision:
    """Refuse training without `min_per_class` labels of each class in each split, or
    without events from `min_history_days` before the first as-of date to within
    `max_staleness_days` of the run date (else the label windows were not observed)."""
    rule = (f"min_labels_per_class={min_per_class}, history from {first_as_of - timedelta(days=min_history_days)}"
            f" to at least {run_date - timedelta(days=max_staleness_days)}")
    counts = {split: (int(class_counts.get(split, {}).get(1.0, 0)), int(class_counts.get(split, {}).get(0.0, 0)))
              for split in ("train", "holdout")}
    observed = (", ".join(f"{split}: {pos} positive / {neg} negative" for split, (pos, neg) in counts.items())
                + f"; events {first_event} to {last_event}")
    problems = [f"the {split} split has {pos} positive and {neg} negative labels (at least {min_per_class} "
                "of each are needed)" for split, (pos, neg) in counts.items() if min(pos, neg) < min_per_class]
    if first_event is None or last_event is None:
        problems.append("there are no events")
    else:
        needed_from = first_as_of - timedelta(days=min_history_days)
        if first_event > needed_from:
            problems.append(f"events start on {first_event}, after {needed_from} "
                            f"({min_history_days} days before the first training as-of date {first_as_of})")
        needed_to = run_date - timedelta(days=max_staleness_days)
        if last_event < needed_to:
            problems.append(f"events end on {last_event}, before {needed_to}; the latest label window "
                            "was not observed")
    return Decision(allowed=not problems, check="data_sufficiency", rule=rule, observed=observed,
                    reason="; ".join(problems))


def _promotion_decision(rule: str, observed: str, champion_note: str, problems: list[str]) -> Decision:
    """A promotion: allowed when no problem was found; the champion's note follows what was observed."""
    if champion_note:
        observed += f" ({champion_note})"
    return Decision(allowed=not problems, check="promotion", rule=rule, observed=observed,
                    reason="; ".join(problems))


def _champion_shown(label: str, champion: float | None) -> str:
    return f", champion {label}{champion:.4f}" if champion is not None else ""


def _worse_than_champion(measure: str, new: float, champion: float | None,
                         worse: Callable[[float, float], bool], compared_on: str = "holdout") -> list[str]:
    """The problem of losing to the champion: `worse(new, champion)`, when there is one."""
    if champion is None or not worse(new, champion):
        return []
    return [f"{measure} {new:.3f} is worse than the champion's {champion:.3f} on the same {compared_on}"]


def promotion(new_auc: float, champion_auc: float | None, min_auc: float, max_auc_drop: float,
              champion_note: str = "") -> Decision:
    """Promote when AUC >= `min_auc` and at most `max_auc_drop` below the champion's AUC
    on the same holdout (`champion_auc` None: no champion, or one that cannot be compared)."""
    problems = [f"holdout AUC {new_auc:.3f} < {min_auc}"] if new_auc < min_auc else []
    problems += _worse_than_champion("holdout AUC", new_auc, champion_auc,
                                     lambda new, champion: new < champion - max_auc_drop)
    return _promotion_decision(f"min_auc={min_auc}, max_auc_drop={max_auc_drop}",
                               f"holdout AUC {new_auc:.4f}" + _champion_shown("", champion_auc), champion_note,
                               problems)


def regression_promotion(new_r2: float, new_rmse: float, champion_rmse: float | None, min_r2: float,
                         max_rmse_increase: float, champion_note: str = "") -> Decision:
    """Promote a regressor when its holdout R^2 >= `min_r2` (0: no worse than predicting
    the holdout mean) and its RMSE is at most `max_rmse_increase` (relative) above the
    champion's on the same holdout (`champion_rmse` None: nothing to compare with)."""
    problems = [f"holdout R2 {new_r2:.3f} < {min_r2}"] if new_r2 < min_r2 else []
    problems += _worse_than_champion("holdout RMSE", new_rmse, champion_rmse,
                                     lambda new, champion: new > champion * (1.0 + max_rmse_increase))
    return _promotion_decision(f"min_r2={min_r2}, max_rmse_increase={max_rmse_increase}",
                               f"holdout R2 {new_r2:.4f}, RMSE {new_rmse:.4f}"
                               + _champion_shown("RMSE ", champion_rmse), champion_note, problems)


def value_sufficiency(buyers: int, repeat_buyers: int, min_repeat_buyers: int) -> Decision:
    """Refuse a lifetime-value fit without `min_repeat_buyers` people who bought on two
    days or more: the spend model learns only from them."""
    rule = f"min_repeat_buyers={min_repeat_buyers}"
    observed = f"{buyers} buyers, {repeat_buyers} repeat buyers"
    reason = (f"{repeat_buyers} repeat buyers (at least {min_repeat_buyers} are needed)"
              if repeat_buyers < min_repeat_buyers else "")
    return Decision(allowed=not reason, check="data_sufficiency", rule=rule, observed=observed, reason=reason)


def value_refit(parameters: dict) -> Decision:
    """Accept a lifetime-value refit on the latest purchases when every parameter is a
    finite positive number, the shapes away from the degenerate edges of these likelihoods
    (below 1e4; the scales alpha, beta and gamma carry the units and are not bounded), the
    Gamma-Gamma mean spend exists (q > 1) and the mean purchase rate r / alpha is at most
    one purchase day per day. `parameters`: the counting model's (named by
    "counting_model", BG/NBD when absent) and "gamma_gamma"."""
    counting = parameters.get("counting_model", "bgnbd")
    counts, spend = parameters[counting], parameters["gamma_gamma"]
    values = {**{f"{counting}.{k}": v for k, v in counts.items()}, **{f"gamma_gamma.{k}": v for k, v in spend.items()}}
    scales = (".alpha", ".beta", ".gamma")
    problems = [f"{name} = {value:.4g} is not a positive number below 1e4" for name, value in values.items()
                if not (math.isfinite(value) and 0 < value < 1e4) and not name.endswith(scales)]
    problems += [f"{name} = {value:.4g} is not a finite positive number" for name, value in values.items()
                 if name.endswith(scales) and not (math.isfinite(value) and value > 0)]
    if not problems and spend["q"] <= 1:
        problems.append(f"gamma_gamma.q = {spend['q']:.4g}: the mean spend does not exist (q <= 1)")
    if not problems and counts["r"] / counts["alpha"] > 1:
        problems.append(f"the mean purchase rate r / alpha = {counts['r'] / counts['alpha']:.4g} exceeds one a day")
    observed = ", ".join(f"{name}={value:.4g}" for name, value in values.items())
    return Decision(allowed=not problems, check="refit_plausible", rule="0 < shapes < 1e4, q > 1, r / alpha <= 1",
                    observed=observed, reason="; ".join(problems))


def value_promotion(new_mae: float, total_ratio: float, champion_mae: float | None, max_total_error: float,
                    max_mae_increase: float, champion_note: str = "") -> Decision:
    """Promote a lifetime-value model when its holdout total is within `max_total_error`
    of the actual total (ratio 1 +- error) and its per-person MAE is at most
    `max_mae_increase` (relative) above the champion's on the same holdout."""
    problems = ([f"predicted/actual total {total_ratio:.3f} is outside 1 +- {max_total_error}"]
                if not abs(total_ratio - 1.0) <= max_total_error else [])
    problems += _worse_than_champion("holdout MAE", new_mae, champion_mae,
                                     lambda new, champion: new > champion * (1.0 + max_mae_increase))
    return _promotion_decision(f"max_total_error={max_total_error}, max_mae_increase={max_mae_increase}",
                               f"holdout MAE {new_mae:.4f}, predicted/actual total {total_ratio:.3f}"
                               + _champion_shown("MAE ", champion_mae), champion_note, problems)


def affinity_promotion(new_precision: float, popularity_precision: float, champion_precision: float | None,
                       min_lift_over_popularity: float, max_precision_drop: float,
                       champion_note: str = "") -> Decision:
    """Promote an affinity model when its holdout precision at k is at least
    `min_lift_over_popularity` times the popularity baseline's, and at most
    `max_precision_drop` below the champion's on the same holdout."""
    problems = ([f"holdout precision@k {new_precision:.3f} is below {min_lift_over_popularity} x the "
                 f"popularity baseline's {popularity_precision:.3f}"]
                if new_precision < popularity_precision * min_lift_over_popularity else [])
    problems += _worse_than_champion("holdout precision@k", new_precision, champion_precision,
                                     lambda new, champion: new < champion - max_precision_drop)
    return _promotion_decision(
        f"min_lift_over_popularity={min_lift_over_popularity}, max_precision_drop={max_precision_drop}",
        f"holdout precision@k {new_precision:.4f}, popularity {popularity_precision:.4f}"
        + _champion_shown("", champion_precision), champion_note, problems)


def segments_promotion(silhouette: float, champion_silhouette: float | None, min_silhouette: float,
                       max_silhouette_drop: float, champion_note: str = "") -> Decision:
    """Promote a segmentation whose silhouette on the people it segments is at least
    `min_silhouette` (below it the segments are not separated enough to name), and at most
    `max_silhouette_drop` below the champion's on the same people."""
    problems = [f"silhouette {silhouette:.3f} < {min_silhouette}"] if silhouette < min_silhouette else []
    problems += _worse_than_champion("silhouette", silhouette, champion_silhouette,
                                     lambda new, champion: new < champion - max_silhouette_drop, "people")
    return _promotion_decision(f"min_silhouette={min_silhouette}, max_silhouette_drop={max_silhouette_drop}",
                               f"silhouette {silhouette:.4f}" + _champion_shown("", champion_silhouette),
                               champion_note, problems)
