# One entry point for users and CI. Everything a target needs is installed by it.
PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
JARS_DIR    := .cache/jars
RUN_DATE    ?= $(shell date -u +%F)
# Spark binds to loopback: no warning about the host name, nothing exposed.
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(abspath $(BIN)/python)
DEMO_ROOT   ?= lakehouse
DEMO_PROFILES ?= 20000
DEMO_DAYS   ?= 365
SEED        ?= 7

SETUP_STAMP := $(VENV)/.setup-done
# Airflow (for the nightly DAG in jobs/airflow/) pins what .venv's mlflow and pyspark cannot share.
AIRFLOW_VENV  := .cache/airflow-venv
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.setup-done
JARS_STAMP  := $(JARS_DIR)/.fetched
XDM_JAR     := $(JARS_DIR)/enrich-xdm.jar
XDM_SOURCES := $(shell find pipelines/xdm/jvm -name '*.java')

.PHONY: setup jars demo cluster-demo object-store-demo test check dag-check fault-test lint dist bench model-quality clean-lakehouse notebook

setup: $(SETUP_STAMP) $(JARS_STAMP) $(XDM_JAR)

$(SETUP_STAMP): setup.cfg deps/constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c deps/constraints.txt -e '.[test]'
	touch $@

# Delta jars come from Maven Central once; runs and tests use the cache offline.
jars: $(JARS_STAMP)

$(JARS_STAMP): deps/pom.xml
	mvn --batch-mode --quiet -f deps/pom.xml dependency:copy-dependencies \
	    -DincludeGroupIds=io.delta,org.apache.hadoop,software.amazon.awssdk,org.reactivestreams \
	    -DincludeScope=runtime -DexcludeArtifactIds=apache5-client -DoutputDirectory=$(abspath $(JARS_DIR))
	touch $@

# The XDM record normaliser runs in the JVM, once per record; it compiles against the
# Spark jars pyspark ships, so it needs no download.
$(XDM_JAR): $(XDM_SOURCES) $(SETUP_STAMP)
	rm -rf build/jvm && mkdir -p build/jvm $(JARS_DIR)
	javac --release 17 -Xlint:all,-path -Werror -d build/jvm \
	    -cp "$$($(BIN)/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars/*" \
	    $(XDM_SOURCES)
	jar --create --file $@ -C build/jvm .

demo: setup
	$(BIN)/enrich generate --run-date $(RUN_DATE) --profiles $(DEMO_PROFILES) --days $(DEMO_DAYS) \
	    --seed $(SEED) --set lakehouse.root=$(DEMO_ROOT)
	$(BIN)/enrich nightly --run-date $(RUN_DATE) --set lakehouse.root=$(DEMO_ROOT)

# JupyterLab on localhost over notebooks/, with a kernel ("Profile enrichment") that opens the
# lakehouse of `make demo` (DEMO_ROOT) as soon as it starts: `ws` and `spark` are ready.
NOTEBOOK_STAMP := $(VENV)/.notebook-setup-done
$(NOTEBOOK_STAMP): $(SETUP_STAMP)
	$(BIN)/pip install --quiet -c deps/constraints.txt -e '.[test,notebook]'
	touch $@

notebook: setup $(NOTEBOOK_STAMP)
	$(BIN)/python -m pipelines.workspace install-kernel
	ENRICH_LAKEHOUSE=$(abspath $(DEMO_ROOT)) ENRICH_RUN_DATE=$(RUN_DATE) \
	    $(BIN)/jupyter lab --ip 127.0.0.1 --no-browser --notebook-dir notebooks \
	    $(if $(filter 0,$(shell id -u)),--allow-root)

# The fast tier, after every change: unit tests and one small nightly (marked `fast` by
# tests/conftest.py from where a test lives), property tests on a few cases each.
test: setup
	HYPOTHESIS_PROFILE=fast $(BIN)/python -m pytest -q -m fast --durations=10 tests/unit tests/e2e

# Every tier, what CI runs: the linters and the layer contract, the Airflow DAG checks, then
# every test (the e2e lakehouse, notebooks, spark-submit, the GX break matrix, the fault test
# on a standalone cluster); the ten slowest tests print last.
check: setup lint $(AIRFLOW_STAMP)
	$(MAKE) dag-check
	HYPOTHESIS_PROFILE=thorough $(BIN)/python -m pytest -q -p no:cacheprovider --durations=10 \
	    tests/unit tests/component tests/e2e tests/object_store tests/matrix tests/faults

# Built afresh when the pins change, so the venv holds exactly deps/airflow-requirements.txt.
$(AIRFLOW_STAMP): deps/airflow-requirements.txt
	rm -rf $(AIRFLOW_VENV)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --disable-pip-version-check -r deps/airflow-requirements.txt
	touch $@

# The DAG loads and matches the pipeline, in the Airflow venv; --confcutdir keeps pytest away
# from tests/conftest.py, which needs pyspark.
dag-check: $(AIRFLOW_STAMP)
	$(AIRFLOW_VENV)/bin/python -m pytest -q --confcutdir=tests/scheduling tests/scheduling

# Only the fault test (part of `check`): drivers and executors killed at every step of a night
# on a standalone cluster; the tables must equal a clean run's.
fault-test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/faults --durations=5

# Measurements, not tests: results go to bench/results/.
BENCH_PROFILES ?= 20000
SCALE_PROFILES ?= 100000 1000000
# Sizes of the nightly benchmark in events; empty: conf's bench.event_sizes.
BENCH_EVENTS ?=
BENCH_STAMP := $(VENV)/.bench-setup-done
$(BENCH_STAMP): $(SETUP_STAMP)
	$(BIN)/pip install --quiet -c deps/constraints.txt -e '.[test,bench]'
	touch $@

bench: setup $(BENCH_STAMP)
	$(BIN)/python bench/nightly_at_scale.py $(if $(BENCH_EVENTS),--events $(BENCH_EVENTS))
	$(BIN)/python bench/ingest_throughput.py --profiles $(BENCH_PROFILES)
	$(BIN)/python bench/validation_cost.py --profiles $(BENCH_PROFILES)
	$(BIN)/python bench/models_at_scale.py --profiles $(SCALE_PROFILES) --conf bench/heap-16g.yaml
	$(BIN)/python bench/ltv_at_scale.py --people 100000 1000000

# Each champion of the demo lakehouse against the generator's oracle (after `make demo`).
model-quality: setup
	$(BIN)/python bench/model_quality.py --root $(DEMO_ROOT)
	$(BIN)/python bench/oracle_gap.py --root $(DEMO_ROOT)
	$(BIN)/python bench/cdnow_vs_lifetimes.py

lint: setup
	$(BIN)/ruff check pipelines jobs tests bench tools examples
	$(BIN)/lint-imports

# The package as a wheel, for spark-submit --py-files on a cluster.
dist: setup
	rm -rf dist
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	cp $(XDM_JAR) dist/

# The nightly submitted to a real Spark standalone master and worker on loopback, the
# package as the wheel from `make dist`, its executor killed as each step starts.
CLUSTER_ROOT ?= lakehouse-cluster
cluster-demo: dist
	$(BIN)/python -m tools.standalone_cluster --root $(CLUSTER_ROOT) --profiles 1500 --days 240 \
	    --run-date $(RUN_DATE) --kill-executors

# The nightly with its lakehouse on a local S3 server and its models on a local MLflow
# server (artifacts on the same S3), two nightlies racing for the lock, and the change feed
# read with delta-rs; one line per check at the end.
OBJECT_STORE_PROFILES ?= 10000
object-store-demo: setup
	$(BIN)/python -m tools.object_store_demo --profiles $(OBJECT_STORE_PROFILES) --run-date $(RUN_DATE)

clean-lakehouse:
	rm -rf $(DEMO_ROOT)
