"""spark-submit entry point for `enrich publish`: same options, same exit codes.

    spark-submit jobs/publish.py --env cluster --run-date 2026-11-27
"""

import sys
from pathlib import Path

try:
    from pipelines.cli import main
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(["publish", *sys.argv[1:]]))
