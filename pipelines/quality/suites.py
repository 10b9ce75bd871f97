"""Great Expectations suites kept in GX's JSON format under conf/gx, run on Spark frames.

Every expectation in a suite names itself with `meta.check` (e.g. `event_id_unique`);
its severity comes from conf (`quality.severity.<suite>.<check>`, else
`quality.default_severity`): `error` blocks the run, `warning` is recorded. GX computes
its metrics in Spark; the driver receives only summary numbers and a few sample values.

    suite = load_suite(Path("conf/gx/scores.json"), {"score_in_range": "warning"}, "error")
    outcomes = validate(scores, suite, {}, sample_size=5, docs_dir="reports/data_docs", run_name=run_id)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import great_expectations as gx
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                        ProgressBarsConfig)
from great_expectations.render.renderer.site_builder import DefaultSiteIndexBuilder
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BytecodeCache
from pyspark.sql import DataFrame

from pipelines.core.errors import BadInputError
from pipelines.quality.stores import store_backend

SEVERITIES = {"error": "critical", "warning": "warning"}   # conf word -> GX FailureSeverity
DOCS_SITE = "enrich"


@dataclass(frozen=True)
class ExpectationOutcome:
    suite: str
    check: str                # the suite's name for it, e.g. event_id_unique
    expectation: str          # GX type and column, e.g. expect_column_values_to_be_unique(_id)
    severity: str             # error | warning
    success: bool
    observed: str             # unexpected count, or GX's observed value
    samples: list

    @property
    def blocks(self) -> bool:
        return not self.success and self.severity == "error"

    def describe(self) -> str:
        sample = f", e.g. {self.samples}" if self.samples else ""
        return f"{self.suite}.{self.check} {self.expectation}: {self.observed}{sample}"


def load_suite(path: Path, severities: Mapping[str, str], default_severity: str) -> gx.ExpectationSuite:
    """Read a GX suite and set each expectation's severity from conf.

    Fails (exit code 2) on a missing or malformed file, an expectation without
    `meta.check`, an unknown severity word, or a conf severity for a check the suite lacks.
    """
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise BadInputError(f"expectation suite not found: {path}") from err
    except ValueError as err:
        raise BadInputError(f"expectation suite {path} is not JSON: {err}") from err
    name = document.get("name", path.stem)
    checks = []
    for position, expectation in enumerate(document.get("expectations", [])):
        check = (expectation.get("meta") or {}).get("check")
        if not check:
            raise BadInputError(f"expectation suite {path}: expectation {position} has no meta.check name")
        checks.append(check)
        word = str(severities.get(check, default_severity))
        if word not in SEVERITIES:
            raise BadInputError(f"quality.severity.{name}.{check} must be one of {sorted(SEVERITIES)}, "
                                f"got {word!r}")
        expectation["severity"] = SEVERITIES[word]
    unknown = sorted(set(severities) - set(checks))
    if unknown:
        raise BadInputError(f"quality.severity.{name} names checks the suite {path} does not have: {unknown}")
    try:
        return gx.ExpectationSuite(**document)
    except (ValueError, TypeError) as err:
        raise BadInputError(f"expectation suite {path} is not a valid GX suite: {err}") from err


# Where an expectation names the columns it reads; any other argument is a value.
COLUMN_ARGUMENTS = ("column", "column_A", "column_B", "column_list")
VALUE_ARGUMENTS = {"min_value", "max_value", "strict_min", "strict_max", "value_set", "or_equal", "regex",
                   "regex_list", "mostly", "ignore_row_if", "parse_strings_as_datetimes", "result_format"}


def columns_read(suite: gx.ExpectationSuite) -> set[str] | None:
    """The columns `suite`'s expectations read, or None when that cannot be told from their
    arguments (a row condition, an argument not known here, the table's column names)."""
    columns = set()
    for expectation in suite.expectations:
        config = expectation.configuration
        unknown = set(config.kwargs) - VALUE_ARGUMENTS - set(COLUMN_ARGUMENTS)
        if config.type.startswith("expect_table_column") or unknown:
            return None
        for name in COLUMN_ARGUMENTS:
            value = config.kwargs.get(name)
            columns.update([value] if isinstance(value, str) else value or [])
    return columns


def _label(config) -> str:
    column = config.kwargs.get("column")
    if column is None and "column_A" in config.kwargs:
        column = f"{config.kwargs['column_A']}, {config.kwargs['column_B']}"
    if column is None and "column_list" in config.kwargs:
        column = ", ".join(config.kwargs["column_list"])
    return f"{config.type}({column})" if column else config.type


def _observed(result: dict) -> str:
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} unexpected of {result.get('element_count')}"
    return json.dumps(result.get("observed_value"), default=str)


def _exception_message(info: dict | None) -> str | None:
    """First line of the error behind a result, if any. GX reports one error, or one per
    metric that failed to compute."""
    if not info:
        return None
    if "raised_exception" in info:
        errors = [info] if info["raised_exception"] else []
    else:
        errors = list(info.values())
    for error in errors:
        message = error.get("exception_message") if isinstance(error, dict) else getattr(error, "exception_message", "")
        if message and str(message).strip():
            return str(message).strip().splitlines()[0]
    return "a metric could not be computed" if errors else None


class KeepingSiteIndexBuilder(DefaultSiteIndexBuilder):
    """GX's index builder, minus the clean-up: each validation runs in its own ephemeral
    context, whose in-memory store knows only its own suite, so the default would delete
    every other suite's page from the site."""

    def build(self, skip_and_clean_missing: bool = True, build_index: bool = True):
        return super().build(skip_and_clean_missing=False, build_index=build_index)


class _CompiledTemplates(BytecodeCache):
    """Jinja templates compiled once per process. GX builds a new Jinja environment for every
    page, so without this each suite compiled the same fifty templates again: most of what
    its Data Docs pages cost."""

    def __init__(self):
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)   # Jinja discards it if the template's source changed

    def dump_bytecode(self, bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED_TEMPLATES = _CompiledTemplates()


class _CompiledOnce:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = _COMPILED_TEMPLATES


class CompiledOncePageView(_CompiledOnce, DefaultJinjaPageView):
    """GX's page view (suites and validation results), its templates compiled once."""


class CompiledOnceIndexPageView(_CompiledOnce, DefaultJinjaIndexPageView):
    """GX's index page view, its templates compiled once."""


def _view(view_class: type) -> dict:
    return {"view": {"module_name": __name__, "class_name": view_class.__name__}}


def _context(docs_dir: str | None, results_dir: str | None, index_limit: int | None):
    """An ephemeral GX context: suites and checkpoints in memory; with `docs_dir`, a Data
    Docs site there and validation results kept as JSON in `results_dir`, where the site's
    index finds the `index_limit` most recent results of earlier suites and nights (all when None)."""
    defaults = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    if docs_dir:
        defaults.stores[defaults.validation_results_store_name]["store_backend"] = store_backend(results_dir)
        defaults.data_docs_sites = {DOCS_SITE: {
            "class_name": "SiteBuilder",
            "site_index_builder": {"module_name": __name__, "class_name": KeepingSiteIndexBuilder.__name__,
                                   "validation_results_limit": index_limit, **_view(CompiledOnceIndexPageView)},
            "site_section_builders": {"expectations": _view(CompiledOncePageView),
                                      "validations": _view(CompiledOncePageView)},
            "store_backend": store_backend(docs_dir),
        }}
    config = DataContextConfig(store_backend_defaults=defaults, progress_bars=ProgressBarsConfig(globally=False))
    return gx.get_context(mode="ephemeral", project_config=config)


def validate(df: DataFrame, suite: gx.ExpectationSuite, parameters: dict[str, Any], sample_size: int,
             docs_dir: str | None = None, results_dir: str | None = None,
             run_name: str | None = None, index_limit: int | None = None) -> list[ExpectationOutcome]:
    """Validate `df` with `suite`; one outcome per expectation. With `docs_dir` (and
    `results_dir`), the result is also kept and rendered into the GX Data Docs site there,
    whose index lists the `index_limit` most recent results.

    Sampling bad values costs a Spark query per check, so the suite runs first without
    samples (counts and observed values only); the checks that failed then run again, alone
    and without Data Docs, for up to `sample_size` of their bad values. A night whose checks
    all pass never samples."""
    if bool(docs_dir) != bool(results_dir):
        raise ValueError("docs_dir and results_dir go together")
    outcomes = _outcomes(_run(df, suite, parameters, 0, docs_dir, results_dir, run_name, index_limit), suite.name)
    failed = [o.check for o in outcomes if not o.success]
    if not failed or sample_size < 1:
        return outcomes
    again = gx.ExpectationSuite(name=suite.name, expectations=[
        expectation.configuration.to_json_dict() for expectation in suite.expectations
        if expectation.meta["check"] in failed])
    samples = {o.check: o.samples for o in _outcomes(_run(df, again, parameters, sample_size), suite.name)}
    return [replace(o, samples=samples.get(o.check, [])[:sample_size]) for o in outcomes]


def _run(df: DataFrame, suite: gx.ExpectationSuite, parameters: dict[str, Any], sample_size: int,
         docs_dir: str | None = None, results_dir: str | None = None, run_name: str | None = None,
         index_limit: int | None = None) -> list:
    """One GX checkpoint of `suite` on `df`: its expectation results, with up to
    `sample_size` bad values each (none: no sampling query)."""
    context = _context(docs_dir, results_dir, index_limit)
    batch_definition = (context.data_sources.add_spark(name="enrich")
                        .add_dataframe_asset(name=suite.name)
                        .add_batch_definition_whole_dataframe("batch"))
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=suite))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if docs_dir else []
    result_format = ({"result_format": "SUMMARY", "partial_unexpected_count": sample_size} if sample_size
                     else {"result_format": "BASIC", "partial_unexpected_count": 0})
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=suite.name, validation_definitions=[definition], actions=actions, result_format=result_format))
    run = checkpoint.run(batch_parameters={"dataframe": df}, expectation_parameters=parameters,
                         run_id=RunIdentifier(run_name=run_name) if run_name else None)
    (result,) = run.run_results.values()
    return result.results


def _outcomes(results: list, suite_name: str) -> list[ExpectationOutcome]:
    outcomes = []
    for item in results:
        config = item.expectation_config
        check = config.meta["check"]
        problem = _exception_message(item.exception_info)
        if problem:
            raise BadInputError(f"suite {suite_name}: check {check} could not run: {problem}")
        samples = [json.loads(json.dumps(v, default=str)) for v in (item.result.get("partial_unexpected_list") or [])]
        gx_severity = str(getattr(config.severity, "value", config.severity)).lower()
        outcomes.append(ExpectationOutcome(
            suite=suite_name, check=check, expectation=_label(config),
            severity="error" if gx_severity == "critical" else "warning",
            success=bool(item.success), observed=_observed(item.result), samples=samples))
    return outcomes
