"""spark-submit entry point for `enrich score`: same options, same exit codes.

    spark-submit jobs/score.py --env cluster --run-date 2026-11-27
"""

from _entry import run_step

if __name__ == "__main__":
    run_step("score")
