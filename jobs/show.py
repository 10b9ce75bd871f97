"""spark-submit entry point for `enrich show`: same options, same exit codes.

    spark-submit jobs/show.py --env cluster --identity Email:ann@example.com
"""

from _entry import run_step

if __name__ == "__main__":
    run_step("show")
