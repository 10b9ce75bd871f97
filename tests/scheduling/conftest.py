"""Airflow's settings for the DAG tests: a throwaway AIRFLOW_HOME, no deployment settings.

Runs in the Airflow venv only (`make dag-check`), with --confcutdir so that tests/conftest.py,
which needs pyspark, is not loaded. Airflow reads AIRFLOW_HOME when it is first imported,
so it is set here, before the test module imports it.
"""

import os
import tempfile

_AIRFLOW_HOME = tempfile.TemporaryDirectory(prefix="enrich-airflow-home-")   # removed at exit
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME.name
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The DAG reads its deployment settings from ENRICH_* variables; the tests check the defaults.
for _name in [name for name in os.environ if name.startswith("ENRICH_")]:
    del os.environ[_name]
