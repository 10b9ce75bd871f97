"""spark-submit entry point for `enrich backfill`: same options, same exit codes.

    spark-submit jobs/backfill.py --env cluster --from 2026-11-01 --to 2026-11-27
"""

from _entry import run_step

if __name__ == "__main__":
    run_step("backfill")
