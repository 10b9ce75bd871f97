"""Every check of every GX suite fails on a table that breaks just that check, and no
other check does (the tables are in tests/quality_cases.py)."""

from __future__ import annotations

import copy

import pytest

from tests.quality_cases import SUITES, failed_checks


@pytest.mark.parametrize("suite_name,check", [(s, c) for s in sorted(SUITES) for c in SUITES[s]["breaks"]])
def test_breaking_one_rule_fails_exactly_that_check(spark, suite_name, check):
    rows = SUITES[suite_name]["breaks"][check](copy.deepcopy(SUITES[suite_name]["rows"]))
    assert failed_checks(spark, suite_name, rows) == {check}
