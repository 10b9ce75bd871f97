"""The whole pipeline on a real purchase log against `lifetimes` in a notebook, judged on
what the customers did next.

    .venv/bin/python bench/cdnow_vs_lifetimes.py [--root /tmp/cdnow]

The CDNOW log `lifetimes` ships (69,659 purchases, 23,570 customers of one acquisition
cohort, one category) is written as XDM purchases; the purchases before the calibration
end land, and one `enrich nightly` runs on that date with the default conf. Its profile
values (convert, churn, lifetime value) are judged on the 30, 60 and 90 days after, beside
BG/NBD + Gamma-Gamma fitted by `lifetimes` on the same purchases. Writes
bench/results/cdnow_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))   # tests/real_data.py holds the CDNOW reader and the judging

from pipelines.cli import main as enrich  # noqa: E402
from pipelines.core import lakehouse  # noqa: E402
from pipelines.core.config import load_config  # noqa: E402
from pipelines.core.session import build_session  # noqa: E402
from tests.real_data import (CDNOW_CALIBRATION_END, CDNOW_JUDGING_SETTINGS, cdnow_master,  # noqa: E402
                             what_happened_next, write_cdnow_events)

PROFILE_COLUMNS = ["primary_identity_id", "convert_probability", "churn_probability", "ltv_expected_purchases",
                   "ltv_expected_value"]
ROWS = (("purchases_90d_error", "lifetime value: predicted purchases over 90 days vs actual", "{:+.1%}"),
        ("purchases_mae", "lifetime value: per-person MAE, purchases", "{:.3f}"),
        ("value_90d_ratio", "lifetime value: predicted value vs actual", "{:.2f}x"),
        ("value_mae", "lifetime value: per-person MAE, value", "{:.2f}"),
        ("convert_auc", "convert: AUC of a purchase within 30 days", "{:.3f}"),
        ("churn_auc", "churn: AUC of no purchase within 60 days, active buyers", "{:.3f}"))


def markdown(table: dict) -> str:
    lines = ["| insight | pipeline | BG/NBD + Gamma-Gamma in `lifetimes` |", "|---|---:|---:|"]
    lines += [f"| {label} | {fmt.format(table[key]['pipeline'])} | {fmt.format(table[key]['lifetimes'])} |"
              for key, label, fmt in ROWS]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/cdnow-bench/lakehouse")
    args = parser.parse_args()
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    purchases = cdnow_master()
    write_cdnow_events([p for p in purchases if p.day < CDNOW_CALIBRATION_END], root / "landing" / "events")
    started = time.monotonic()
    code = enrich(["nightly", "--run-date", CDNOW_CALIBRATION_END.isoformat(), "--set", f"lakehouse.root={root}",
                   *[arg for setting in CDNOW_JUDGING_SETTINGS for arg in ("--set", setting)]])
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"the nightly exited {code}")
    cfg = load_config("local", overrides=[f"lakehouse.root={root}"])
    spark = build_session(cfg)
    profiles = lakehouse.read(spark, cfg.table("profile_enrichment")).select(*PROFILE_COLUMNS).toPandas()
    table = what_happened_next(profiles, purchases, CDNOW_CALIBRATION_END)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "cdnow_quality.json").write_text(json.dumps({"calibration_end": CDNOW_CALIBRATION_END.isoformat(),
                                                        "nightly_seconds": round(seconds, 1), **table},
                                                       indent=2) + "\n")
    text = markdown(table)
    note = (f"One nightly on the {len([p for p in purchases if p.day < CDNOW_CALIBRATION_END]):,} CDNOW purchases "
            f"before {CDNOW_CALIBRATION_END} ({int(table['people']['pipeline']):,} profiles, {seconds:.0f} s), "
            "judged on the days after it.")
    (out / "cdnow_quality.md").write_text(f"# A real purchase log: the pipeline against `lifetimes`\n\n{note}\n\n"
                                          f"{text}\n")
    print(text)
    print(note)


if __name__ == "__main__":
    main()
