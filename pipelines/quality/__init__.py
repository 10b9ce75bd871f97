"""Data-quality gates: Great Expectations suites (conf/gx) run on Spark frames."""
