"""When and at which commit a benchmark size was measured.

Benchmarks keep earlier sizes beside new ones (`--add`), so each size carries its own stamp.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    """What a benchmark ran on, e.g. '2 cores, CPython 3.11.7'; sizes are kept together only
    when this matches (`--add`)."""
    return f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"


def measured_stamp() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return {"date": date.today().isoformat(), "commit": commit.stdout.strip() or None}


def measured_when(size: dict) -> str:
    """'on 2026-11-30 at abc1234', or 'on an unrecorded date' for sizes measured before stamps."""
    measured = size.get("measured") or {}
    commit = f" at {measured['commit']}" if measured.get("commit") else ""
    return f"on {measured.get('date', 'an unrecorded date')}{commit}"
