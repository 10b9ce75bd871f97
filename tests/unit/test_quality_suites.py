"""Every GX suite passes a good table (tests/quality_cases.py; tests/matrix breaks each
check in turn); failures carry samples and conf's severity; a suite that does not fit is a
configuration error; the Data Docs index stays bounded."""

from __future__ import annotations

import copy
import json

import pytest

from pipelines.core.errors import BadInputError
from pipelines.quality.suites import columns_read, load_suite, validate
from tests.quality_cases import SCORES, SUITE_DIR, SUITES, failed_checks, row_with


@pytest.mark.parametrize("suite_name", sorted(SUITES))
def test_a_good_table_passes_every_check(spark, suite_name):
    assert failed_checks(spark, suite_name, copy.deepcopy(SUITES[suite_name]["rows"])) == set()


def test_failures_carry_sample_values_and_the_severity_from_conf(spark):
    suite = load_suite(SUITE_DIR / "scores.json", {"bucket_known": "warning"}, "error")
    spec = SCORES
    bad = row_with(1, bucket="lukewarm")(copy.deepcopy(spec["rows"]))
    frame = spark.createDataFrame([tuple(r.get(f.name) for f in spec["schema"].fields) for r in bad], spec["schema"])
    (outcome,) = [o for o in validate(frame, suite, {}, sample_size=3) if not o.success]
    assert (outcome.check, outcome.severity, outcome.blocks) == ("bucket_known", "warning", False)
    assert outcome.samples == ["lukewarm"] and outcome.observed == "1 unexpected of 3"


def _write_suite(tmp_path, expectations) -> object:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "tiny", "expectations": expectations}))
    return path


NOT_NULL = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}, "meta": {"check": "x_present"}}


@pytest.mark.parametrize("expectations,severities,message", [
    ([dict(NOT_NULL, meta={})], {}, "no meta.check"),
    ([NOT_NULL], {"x_present": "fatal"}, "quality.severity.tiny.x_present must be one of"),
    ([NOT_NULL], {"y_present": "warning"}, r"names checks the suite .* does not have: \['y_present'\]"),
])
def test_a_suite_or_severity_that_does_not_fit_is_a_configuration_error(tmp_path, expectations, severities, message):
    with pytest.raises(BadInputError, match=message):
        load_suite(_write_suite(tmp_path, expectations), severities, "error")


def test_a_suite_reads_the_columns_its_expectations_name_or_every_column_when_that_cannot_be_told(tmp_path):
    pair = {"type": "expect_column_pair_values_a_to_be_greater_than_b",
            "kwargs": {"column_A": "a", "column_B": "b", "or_equal": True}, "meta": {"check": "a_over_b"}}
    compound = {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["c", "d"]},
                "meta": {"check": "cd_unique"}}
    rows = {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}, "meta": {"check": "has_rows"}}
    suite = load_suite(_write_suite(tmp_path, [NOT_NULL, pair, compound, rows]), {}, "error")
    assert columns_read(suite) == {"x", "a", "b", "c", "d"}
    conditioned = dict(NOT_NULL, kwargs={"column": "x", "row_condition": 'col("y") > 0', "condition_parser": "spark"})
    every_column = {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["x"]},
                    "meta": {"check": "columns"}}
    for expectations in ([NOT_NULL, conditioned], [NOT_NULL, every_column]):
        assert columns_read(load_suite(_write_suite(tmp_path, expectations), {}, "error")) is None


@pytest.mark.parametrize("suite_name", sorted(SUITES))
def test_each_shipped_suite_names_the_columns_it_reads(suite_name):
    # The quality gate caches only those columns of a night's table before GX reads it.
    assert columns_read(load_suite(SUITE_DIR / f"{suite_name}.json", {}, "error"))


def test_a_check_on_a_missing_column_is_reported_not_passed(spark, tmp_path):
    suite = load_suite(_write_suite(tmp_path, [NOT_NULL]), {}, "error")
    with pytest.raises(BadInputError, match="check x_present could not run"):
        validate(spark.createDataFrame([(1,)], "y int"), suite, {}, sample_size=3)


@pytest.mark.parametrize("as_uri", [False, True], ids=["local path", "URI through Hadoop"])
def test_the_data_docs_index_lists_only_the_most_recent_results_and_keeps_every_page(spark, tmp_path, as_uri):
    suite = load_suite(_write_suite(tmp_path, [NOT_NULL]), {}, "error")
    docs, results = tmp_path / "docs", tmp_path / "results"
    named = (lambda path: path.as_uri()) if as_uri else str
    for night in ("night-a", "night-b", "night-c"):
        validate(spark.createDataFrame([(1,)], "x int"), suite, {}, sample_size=3, docs_dir=named(docs),
                 results_dir=named(results), run_name=night, index_limit=2)
    index = (docs / "index.html").read_text()
    assert "night-b" in index and "night-c" in index and "night-a" not in index
    assert {page.relative_to(docs / "validations").parts[1] for page in (docs / "validations").rglob("*.html")} == {
        "night-a", "night-b", "night-c"}
