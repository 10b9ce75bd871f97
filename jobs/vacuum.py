"""spark-submit entry point for `enrich vacuum`: same options, same exit codes.

    spark-submit jobs/vacuum.py --env cluster
"""

from _entry import run_step

if __name__ == "__main__":
    run_step("vacuum")
