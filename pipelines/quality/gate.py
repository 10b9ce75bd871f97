"""The checks a step runs on what it wrote, before the next step may start.

    with QualityChecks(ctx) as checks:
        checks.run_suite("features", features_of_the_day)
        checks.enforce()              # GateError (exit code 3) if an error-level check failed
        return {**metrics, **checks.outputs()}

Every outcome goes to `ops/dq_results` (a log: a rerun appends its own rows) and, for GX
suites, to the Data Docs site under the reports folder. A step's outcomes are appended in
one commit when it enforces them, reports them, or leaves the `with` block, failing or not:
a Delta commit costs about a second, and a step runs up to a dozen checks.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from pipelines.core import lakehouse
from pipelines.core.errors import GateError
from pipelines.core.context import RunContext
from pipelines.core.clock import utc_now
from pipelines.quality.suites import ExpectationOutcome, columns_read, load_suite, validate

DQ_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()),
    T.StructField("run_date", T.DateType()),
    T.StructField("step", T.StringType()),
    T.StructField("suite", T.StringType()),
    T.StructField("check", T.StringType()),
    T.StructField("expectation", T.StringType()),
    T.StructField("severity", T.StringType()),
    T.StructField("success", T.BooleanType()),
    T.StructField("observed", T.StringType()),
    T.StructField("samples", T.StringType()),
    T.StructField("recorded_at", T.TimestampType()),
])


def data_docs_dir(ctx: RunContext) -> str:
    return f"{ctx.cfg.reports_dir().rstrip('/')}/data_docs"


def validation_results_dir(ctx: RunContext) -> str:
    """GX's JSON validation results, which the Data Docs index is built from."""
    return f"{ctx.cfg.reports_dir().rstrip('/')}/gx_validation_results"


class QualityChecks:
    """Collects the outcomes of one step's checks; records them and enforces severities."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.outcomes: list[ExpectationOutcome] = []
        self.unrecorded: list[tuple] = []
        self.seconds = 0.0

    def __enter__(self) -> "QualityChecks":
        return self

    def __exit__(self, *exc_info) -> bool:
        self.record()
        return False

    def run_suite(self, suite_name: str, df: DataFrame, parameters: dict | None = None,
                  blocking: bool = True) -> list[ExpectationOutcome]:
        """Validate `df` with conf/gx/<suite_name>.json (severities from conf); the outcomes.
        With `blocking` off, an error-level failure is recorded as a warning, and the caller
        decides from the outcomes returned (a model that cannot be trained tonight is skipped,
        it does not stop the night)."""
        cfg, started = self.ctx.cfg, time.monotonic()
        path = cfg.project_path(cfg.get("quality.suite_dir")) / f"{suite_name}.json"
        suite = load_suite(path, cfg.get(f"quality.severity.{suite_name}", {}) or {},
                           cfg.get("quality.default_severity"))
        self.ctx.progress(f"suite {suite_name}: {len(suite.expectations)} expectations")
        # GX runs a few Spark jobs per expectation, a dozen of them at once. Filled first, the
        # cache is what they all read; left lazy, each concurrent job computed the whole plan
        # itself. At most one partition per core: the profile table's view came as a union of
        # 128 shuffle partitions, and every GX job paid 128 tasks for 28k rows.
        # Only the columns the expectations read are cached (and so read from the table).
        read = columns_read(suite)
        if read is not None:
            df = df.select(*([c for c in df.columns if c in read] or df.columns[:1]))
        df = df.coalesce(self.ctx.spark.sparkContext.defaultParallelism).persist(StorageLevel.MEMORY_AND_DISK)
        df.count()
        try:
            outcomes = validate(df, suite, parameters or {}, int(cfg.get("quality.sample_bad_values")),
                                docs_dir=data_docs_dir(self.ctx), results_dir=validation_results_dir(self.ctx),
                                run_name=self.ctx.run_id, index_limit=int(cfg.get("quality.data_docs_index_limit")))
        finally:
            df.unpersist()
        recorded = outcomes if blocking else [replace(o, severity="warning") if o.blocks else o for o in outcomes]
        self.add(recorded, time.monotonic() - started)
        return outcomes

    def add(self, outcomes: list[ExpectationOutcome], seconds: float) -> None:
        """Record outcomes computed elsewhere (drift, for one) with the time they took."""
        self.seconds += seconds
        self.outcomes.extend(outcomes)
        now = utc_now()
        ctx = self.ctx
        self.unrecorded += [(ctx.run_id, ctx.run_date, ctx.step, o.suite, o.check, o.expectation, o.severity,
                             o.success, o.observed, json.dumps(o.samples, default=str), now) for o in outcomes]
        for outcome in outcomes:
            if not outcome.success and not outcome.blocks:
                self.ctx.progress(f"warning: {outcome.describe()}")

    def record(self) -> None:
        """Append the outcomes not written yet to `ops/dq_results`."""
        if self.unrecorded:
            rows, self.unrecorded = self.unrecorded, []
            # Samples may quote personal values: no statistics on them (see lakehouse.STATS_ONLY_ON).
            lakehouse.append(self.ctx.spark.createDataFrame(rows, DQ_SCHEMA), self.ctx.cfg.table("dq_results"),
                             merge_schema=True, properties=lakehouse.stats_on("run_date"))

    def enforce(self) -> None:
        """Stop the run (exit code 3) when an error-level check failed, naming each one."""
        self.record()
        blocking = [o for o in self.outcomes if o.blocks]
        if blocking:
            raise GateError(f"data-quality gate: {len(blocking)} check(s) failed: "
                            + "; ".join(o.describe() for o in blocking)
                            + f" (Data Docs: {data_docs_dir(self.ctx)}/index.html)")

    def outputs(self) -> dict:
        """What the step reports: counts and time for the ledger, warnings for the summary."""
        self.record()
        warnings = [o.describe() for o in self.outcomes if not o.success and not o.blocks]
        return {"dq_checks": len(self.outcomes), "dq_warnings": len(warnings),
                "dq_seconds": round(self.seconds, 3), "quality_warnings": warnings}
