"""Data nobody here wrote, as the tests read it: the XDM project's own example records, and the
CDNOW purchase log (Fader, Hardie and Lee's, as `lifetimes` ships it) written as XDM events.

    folder = xdm_examples()                      # None where the examples are not beside the project
    write_cdnow_events(cdnow_master(), landing)  # 69,659 purchases of 23,570 customers
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
