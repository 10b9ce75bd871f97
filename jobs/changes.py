"""spark-submit entry point for `enrich changes`: same options, same exit codes.

    spark-submit jobs/changes.py --env cluster --since-version 41 --out s3a://exports/changes/2026-11-27
"""

from _entry import run_step

if __name__ == "__main__":
    run_step("changes")
