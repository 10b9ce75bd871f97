"""What every jobs/<step>.py does: run `enrich <step>` with the script's arguments.

spark-submit puts this folder first on sys.path, so the job scripts import it by name.
"""

import sys
from pathlib import Path


def run_step(step: str) -> None:
    try:
        from pipelines.cli import main
    except ImportError:  # a checkout without the package installed
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from pipelines.cli import main
    sys.exit(main([step, *sys.argv[1:]]))
