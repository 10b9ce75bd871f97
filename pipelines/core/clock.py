"""The pipeline's clock: naive UTC datetimes, as Spark's session time zone stores them."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
