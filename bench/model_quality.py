"""Each champion against the generator's oracle, on the holdout it was judged on.

    .venv/bin/python bench/model_quality.py --root lakehouse

Reads a lakehouse made by `enrich generate` + `enrich nightly` (e.g. `make demo`) and its
ground truth (landing/ground_truth); writes bench/results/model_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.core.config import load_config
from pipelines.generate.oracle import oracle_ratios
from pipelines.core.session import build_session

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="lakehouse")
    args = parser.parse_args()
    cfg = load_config("local", overrides=[f"lakehouse.root={args.root}"])
    spark = build_session(cfg)
    ratios = oracle_ratios(spark, cfg, cfg.landing("ground_truth"))
    lines = ["| model | metric | model | oracle | ratio | popularity | people |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {key}{' (' + r['candidate'] + ')' if r.get('candidate') else ''} | {r['metric']} | "
              f"{r['model']:.3f} | {r['oracle']:.3f} | {r['ratio']:.3f} | "
              f"{'-' if r.get('popularity') is None else format(r['popularity'], '.3f')} | {r['people']:,} |"
              for key, r in ratios.items()]
    note = ("Ratio: model / oracle for AUC and precision, oracle / model for MAE; 1.0 is as good as knowing "
            "every person's latent traits. Popularity: the precision of recommending everyone the most "
            "popular items, the floor an affinity model must beat.")
    table = "\n".join(lines)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "model_quality.json").write_text(json.dumps(ratios, indent=2) + "\n")
    (out / "model_quality.md").write_text(f"# Models against the oracle\n\n{table}\n\n{note}\n")
    print(table)
    print(note)


if __name__ == "__main__":
    main()
