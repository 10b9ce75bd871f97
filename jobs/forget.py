"""spark-submit entry point for `enrich forget`: same options, same exit codes.

    spark-submit jobs/forget.py --env cluster --identity Email:ann@example.com
"""

from _entry import run_step

if __name__ == "__main__":
    run_step("forget")
