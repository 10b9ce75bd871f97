"""Data nobody here wrote, as the tests read it: the XDM project's own example records, and the
CDNOW purchase log (Fader, Hardie and Lee's, as `lifetimes` ships it) written as XDM events.

    folder = xdm_examples()                      # None where the examples are not beside the project
    write_cdnow_events(cdnow_master(), landing)  # 69,659 purchases of 23,570 customers
    table = what_happened_next(profiles, cdnow_master(), CDNOW_CALIBRATION_END)

`what_happened_next` judges a nightly's profile values, made from the purchases before a
date, on what the customers did after it, beside `lifetimes` fitted in a notebook on the
same purchases.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import lifetimes

from pipelines.core.config import PROJECT_ROOT

# The first purchase log date and the day after the last one (1997-01-01 .. 1998-06-30).
CDNOW_FIRST, CDNOW_NIGHT = date(1997, 1, 1), date(1998, 7, 1)
# A nightly on the purchases before this date is judged on the 90 days after it. Its look-back
# year holds the whole acquisition cohort, as at its holdout dates.
CDNOW_CALIBRATION_END = date(1998, 1, 1)
# The judging night's conf: the default, with score drift a warning. The one cohort's scores
# move between the holdout month and the night (December's purchases) beyond the drift error,
# and by design a model trained that night that still drifts is skipped (tests/e2e/
# test_model_gates.py); the judging is of the scores, so they are published.
CDNOW_JUDGING_SETTINGS = ["quality.drift.score.error=null"]


def xdm_examples() -> Path | None:
    """The folder of the XDM example records, `shared/xdm-examples` beside the project (or
    above it); None when this machine has no copy."""
    for parent in PROJECT_ROOT.resolve().parents:
        folder = parent / "shared" / "xdm-examples"
        if folder.is_dir():
            return folder
    return None


@dataclass(frozen=True)
class Purchase:
    customer: str
    day: date
    quantity: int
    amount: float


def _datasets() -> Path:
    return Path(lifetimes.__file__).parent / "datasets"


def cdnow_summary() -> dict:
    """The per-customer CDNOW summary in weeks that Fader, Hardie and Lee fitted (2,357
    customers): x, t_x, T and the mean repeat spend, as numpy arrays."""
    import numpy as np

    table = np.genfromtxt(_datasets() / "cdnow_customers_summary_with_transactions.csv", delimiter=",", names=True)
    assert len(table) == 2357
    return {"x": table["x"], "t_x": table["t_x"], "T": table["T"], "mean_spend": table["zbar"]}


def cdnow_master() -> list[Purchase]:
    """Every CDNOW purchase: customer, date, number of CDs, dollars."""
    purchases = []
    for line in (_datasets() / "CDNOW_master.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[0].isdigit():
            day = fields[1]
            purchases.append(Purchase(fields[0], date(int(day[:4]), int(day[4:6]), int(day[6:])), int(fields[2]),
                                      float(fields[3])))
    return purchases


def write_cdnow_events(purchases: list[Purchase], folder: Path, files: int = 4) -> int:
    """The purchases as XDM `commerce.purchases` events in `files` gzip JSON lines files, as a
    store would export them: one category (music), the customer's CRM id as the identity, the
    order total in dollars. How many events were written."""
    folder.mkdir(parents=True, exist_ok=True)
    outs = [gzip.open(folder / f"cdnow-{k}.json.gz", "wt") for k in range(files)]
    try:
        for position, purchase in enumerate(purchases):
            event = {
                "_id": f"cdnow-{position:06d}",
                "timestamp": f"{purchase.day.isoformat()}T12:00:00Z",
                "eventType": "commerce.purchases",
                "identityMap": {"CRMID": [{"id": f"CDNOW-{purchase.customer}", "primary": True}]},
                "commerce": {"purchases": {"value": 1},
                             "order": {"purchaseID": f"order-{position:06d}", "priceTotal": purchase.amount,
                                       "currencyCode": "USD"}},
                "productListItems": [{"SKU": "CD", "name": "compact discs", "quantity": purchase.quantity,
                                      "priceTotal": purchase.amount, "currencyCode": "USD",
                                      "productCategories": [{"categoryID": "music", "categoryName": "Music"}]}],
            }
            outs[int(purchase.customer) % files].write(json.dumps(event) + "\n")
    finally:
        for out in outs:
            out.close()
    return len(purchases)


def _roc_auc(label, score) -> float:
    """AUC-ROC as the Mann-Whitney statistic (ties count half); NaN when no one was scored."""
    import pandas as pd

    label = pd.Series(label).to_numpy(dtype=bool)
    ranks = pd.Series(score).rank(method="average").to_numpy()
    positives, negatives = label.sum(), (~label).sum()
    if not positives or not negatives:
        return float("nan")
    return float((ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def lifetimes_expectations(purchases: list[Purchase], calibration_end: date, horizons: dict[str, int]):
    """`lifetimes` as a notebook user runs it on the purchases before `calibration_end`:
    BetaGeoFitter and GammaGammaFitter on daily summaries; per customer, the expected
    purchases over each of `horizons` and the expected value over the "value" one."""
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    frame = pd.DataFrame([(p.customer, pd.Timestamp(p.day), p.amount) for p in purchases if p.day < calibration_end],
                         columns=["customer", "date", "amount"])
    summary = summary_data_from_transaction_data(frame, "customer", "date", monetary_value_col="amount",
                                                 observation_period_end=pd.Timestamp(calibration_end), freq="D")
    bgf = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    out = pd.DataFrame(index=summary.index)
    for name, days in horizons.items():
        out[name] = bgf.conditional_expected_number_of_purchases_up_to_time(
            days, summary["frequency"], summary["recency"], summary["T"])
    out["expected_value"] = out["value"] * ggf.conditional_expected_average_profit(
        summary["frequency"], summary["monetary_value"])
    return out


def what_happened_next(profiles, purchases: list[Purchase], calibration_end: date) -> dict[str, dict[str, float]]:
    """The profile values of a nightly on the purchases before `calibration_end` (a pandas
    frame: primary_identity_id, convert_probability, churn_probability, ltv_expected_purchases,
    ltv_expected_value), and `lifetimes` on the same purchases, against what happened next:
    the purchase days and spend of each customer in the 30, 60 and 90 days after. Per
    insight, {"pipeline": .., "lifetimes": ..}."""
    import pandas as pd

    profiles = profiles.assign(customer=profiles["primary_identity_id"].str.removeprefix("CDNOW-"))
    profiles = profiles.set_index("customer")
    after = pd.DataFrame([(p.customer, (p.day - calibration_end).days, p.amount) for p in purchases
                          if p.day >= calibration_end], columns=["customer", "day", "amount"])
    daily = after.groupby(["customer", "day"], as_index=False)["amount"].sum()

    def purchase_days(within: int):
        return daily[daily["day"] < within].groupby("customer").size().reindex(profiles.index, fill_value=0)

    value_90 = daily[daily["day"] < 90].groupby("customer")["amount"].sum().reindex(profiles.index, fill_value=0.0)
    theirs = lifetimes_expectations(purchases, calibration_end, {"convert": 30, "churn": 60, "value": 90})
    theirs = theirs.reindex(profiles.index)
    valued = profiles["ltv_expected_purchases"].notna()
    actual_90, actual_value = purchase_days(90)[valued], value_90[valued]
    ours_purchases = profiles.loc[valued, "ltv_expected_purchases"]
    ours_value = profiles.loc[valued, "ltv_expected_value"]
    their_purchases, their_value = theirs.loc[valued, "value"], theirs.loc[valued, "expected_value"]
    scored = profiles["convert_probability"].notna()
    active = profiles["churn_probability"].notna()
    bought_30, bought_60 = purchase_days(30) > 0, purchase_days(60) > 0
    return {
        "purchases_90d_error": {"pipeline": ours_purchases.sum() / actual_90.sum() - 1,
                                "lifetimes": their_purchases.sum() / actual_90.sum() - 1},
        "purchases_mae": {"pipeline": (ours_purchases - actual_90).abs().mean(),
                          "lifetimes": (their_purchases - actual_90).abs().mean()},
        "value_90d_ratio": {"pipeline": ours_value.sum() / actual_value.sum(),
                            "lifetimes": their_value.sum() / actual_value.sum()},
        "value_mae": {"pipeline": (ours_value - actual_value).abs().mean(),
                      "lifetimes": (their_value - actual_value).abs().mean()},
        "convert_auc": {"pipeline": _roc_auc(bought_30[scored], profiles.loc[scored, "convert_probability"]),
                        "lifetimes": _roc_auc(bought_30[scored], theirs.loc[scored, "convert"])},
        "churn_auc": {"pipeline": _roc_auc(~bought_60[active], profiles.loc[active, "churn_probability"]),
                      "lifetimes": _roc_auc(~bought_60[active], -theirs.loc[active, "churn"])},
        "people": {"pipeline": float(len(profiles)), "lifetimes": float(len(theirs))},
    }
