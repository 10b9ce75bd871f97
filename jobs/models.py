"""spark-submit entry point for `enrich models`: same options, same exit codes.

    spark-submit jobs/models.py validate --env cluster --conf conf/our_models.yaml
"""

from _entry import run_step

if __name__ == "__main__":
    run_step("models")
