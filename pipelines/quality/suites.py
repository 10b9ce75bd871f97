"""Run a Great Expectations suite kept in GX's JSON format on a Spark frame.

Severity is GX's own field: `critical` failures block the run (exit code 3),
`warning` failures are recorded and reported. Nothing is collected but GX's summary
metrics and a few sample values per failed expectation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
from pyspark.sql import DataFrame

from pipelines.errors import BadInputError


@dataclass(frozen=True)
class ExpectationOutcome:
    suite: str
    expectation: str          # e.g. expect_column_values_to_be_between(order_price_total)
    severity: str             # critical | warning | info
    success: bool
    observed: str             # unexpected count, or GX's observed value
    samples: list

    def describe(self) -> str:
        sample = f", e.g. {self.samples}" if self.samples else ""
        return f"{self.expectation}: {self.observed}{sample}"


def load_suite(path: Path) -> gx.ExpectationSuite:
    try:
        return gx.ExpectationSuite(**json.loads(path.read_text()))
    except FileNotFoundError as err:
        raise BadInputError(f"expectation suite not found: {path}") from err
    except (ValueError, TypeError) as err:
        raise BadInputError(f"expectation suite {path} is not a valid GX suite: {err}") from err


def _label(config) -> str:
    column = config.kwargs.get("column")
    return f"{config.type}({column})" if column else config.type


def _observed(result: dict) -> str:
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} unexpected of {result.get('element_count')}"
    return json.dumps(result.get("observed_value"), default=str)


def validate(df: DataFrame, suite: gx.ExpectationSuite, parameters: dict[str, Any],
             sample_size: int) -> list[ExpectationOutcome]:
    """Validate `df` with `suite`; one outcome per expectation."""
    context = gx.get_context(mode="ephemeral")
    batch_definition = (context.data_sources.add_spark(name="enrich")
                        .add_dataframe_asset(name=suite.name)
                        .add_batch_definition_whole_dataframe("batch"))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(suite, expectation_parameters=parameters,
                            result_format={"result_format": "SUMMARY",
                                           "partial_unexpected_count": sample_size})
    outcomes = []
    for item in result.results:
        if item.exception_info and item.exception_info.get("raised_exception"):
            raise BadInputError(f"suite {suite.name}: {_label(item.expectation_config)} could not run: "
                                f"{item.exception_info.get('exception_message')}")
        config = item.expectation_config
        samples = [json.loads(json.dumps(v, default=str))
                   for v in (item.result.get("partial_unexpected_list") or [])[:sample_size]]
        outcomes.append(ExpectationOutcome(
            suite=suite.name, expectation=_label(config),
            severity=str(getattr(config.severity, "value", config.severity)).lower(),
            success=bool(item.success), observed=_observed(item.result), samples=samples))
    return outcomes
