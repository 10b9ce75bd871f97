"""spark-submit entry point for `enrich export`: same options, same exit codes.

    spark-submit jobs/export.py --env cluster --out s3a://exports/profiles/2026-11-27 --since-version 41
"""

from _entry import run_step

if __name__ == "__main__":
    run_step("export")
