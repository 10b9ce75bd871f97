"""When and at which commit a benchmark size was measured.

Benchmarks keep earlier sizes beside new ones (`--add`), so each size carries its own stamp.
"""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measured_stamp() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return {"date": date.today().isoformat(), "commit": commit.stdout.strip() or None}


def measured_when(size: dict) -> str:
    """'on 2026-11-30 at abc1234', or 'on an unrecorded date' for sizes measured before stamps."""
    measured = size.get("measured") or {}
    commit = f" at {measured['commit']}" if measured.get("commit") else ""
    return f"on {measured.get('date', 'an unrecorded date')}{commit}"
