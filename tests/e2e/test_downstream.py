"""What downstream systems and people read from the nightly's profile table: XDM export
(valid against its own field group schema), the change feed, and one person's attributes."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import jsonschema
import pyspark.sql.functions as F
import pytest

from pipelines.core import lakehouse
from pipelines.cli import main

from tests.engines import change_feeds_read_by_both, rows_read_by_both

from .conftest import CUSTOM_MODELS


def _run(nightly, *argv) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main([*argv, "--set", f"lakehouse.root={nightly.root}", "--conf", CUSTOM_MODELS])
    return code, out.getvalue()


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines()]


def test_export_writes_one_valid_xdm_record_per_profile(spark, nightly, tmp_path):
    code, printed = _run(nightly, "export", "--out", str(tmp_path / "xdm"))
    assert code == 0 and "exported" in printed
    schema = json.loads((tmp_path / "xdm" / "schema.json").read_text())
    records = _records(tmp_path / "xdm" / "profiles")
    profiles = lakehouse.read(spark, nightly.cfg.table("profile_enrichment"))
    assert len(records) == profiles.count() > 0
    validator = jsonschema.Draft6Validator(schema)
    for record in records:
        validator.validate(record)
    by_id = {next(iter(r["identityMap"].values()))[0]["id"]: r for r in records}
    row = profiles.where(F.col("churn_probability").isNotNull()).first()
    record = by_id[row["primary_identity_id"]]
    assert record["identityMap"] == {row["primary_identity_namespace"]: [{"id": row["primary_identity_id"],
                                                                         "primary": True}]}
    insights = record["_acme"]["insights"]
    assert insights["churn"]["probability"] == row["churn_probability"]
    assert [f["feature"] for f in insights["convert"]["factors"]] == [f["feature"] for f in row["convert_factors"]]
    assert insights["ltv"]["currency"] == "USD" and insights["scoreDate"] == row["score_date"].isoformat()
    # Custom models have their own groups; a logistic regression gives no factors.
    assert insights["outdoor"]["probability"] == row["outdoor_probability"]
    assert [f["feature"] for f in insights["bigSpender"]["factors"]] == \
        [f["feature"] for f in row["big_spender_factors"]] and 0 <= insights["bigSpender"]["score"] <= 100
    assert set(schema["definitions"]["insights"]["properties"]["_acme"]["properties"]["insights"]["properties"]) \
        >= {"outdoor", "bigSpender", "spend", "convert", "churn"}


def test_a_record_that_breaks_the_field_group_is_refused_by_its_schema(nightly, tmp_path):
    assert _run(nightly, "export", "--out", str(tmp_path / "xdm"))[0] == 0
    schema = json.loads((tmp_path / "xdm" / "schema.json").read_text())
    record = _records(tmp_path / "xdm" / "profiles")[0]
    record["_acme"]["insights"]["convert"]["probability"] = "high"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft6Validator(schema).validate(record)


def test_an_output_folder_that_is_not_an_earlier_output_of_the_same_command_is_refused(spark, nightly, tmp_path,
                                                                                      capsys):
    kept = tmp_path / "notes"
    kept.mkdir()
    (kept / "plan.txt").write_text("not to be overwritten\n")
    assert _run(nightly, "export", "--out", str(kept))[0] == 2
    assert _run(nightly, "changes", "--since-version", "0", "--out", str(nightly.root / "gold"))[0] == 2
    assert _run(nightly, "changes", "--since-version", "0", "--out", str(tmp_path / "feed"))[0] == 0
    assert _run(nightly, "export", "--out", str(tmp_path / "feed"))[0] == 2   # the change feed's, not an export
    assert _run(nightly, "changes", "--since-version", "0", "--out", str(tmp_path / "feed"))[0] == 0
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 3 and "was not written by `enrich export`" in errors[0]
    assert "inside the lakehouse" in errors[1] and "holds the output of `enrich changes`" in errors[2]
    assert (kept / "plan.txt").read_text() == "not to be overwritten\n"
    assert lakehouse.exists(spark, str(nightly.root / "gold" / "profile_enrichment"))


def test_an_export_since_the_latest_version_is_empty_and_the_change_feed_agrees(spark, nightly, tmp_path):
    latest = lakehouse.version(spark, nightly.cfg.table("profile_enrichment"))
    code, printed = _run(nightly, "export", "--out", str(tmp_path / "xdm"), "--since-version", str(latest))
    assert code == 0 and printed.startswith("exported 0 XDM profile records")
    code, printed = _run(nightly, "changes", "--since-version", str(latest))
    assert (code, printed) == (0, "")
    # From before the first publish: every person, once, as an insert.
    code, printed = _run(nightly, "changes", "--since-version", "0")
    changes = [json.loads(line) for line in printed.splitlines()]
    assert code == 0 and len(changes) == len({c["person_id"] for c in changes})
    assert len(changes) == lakehouse.read(spark, nightly.cfg.table("profile_enrichment")).count()
    assert {c["change"] for c in changes} == {"insert"}


def test_delta_rs_reads_the_profile_table_and_its_change_feed_as_spark_does(spark, nightly):
    from deltalake import DeltaTable

    path = nightly.cfg.table("profile_enrichment")
    profiles, theirs = rows_read_by_both(spark, path, DeltaTable(path))
    assert theirs == profiles
    ours, theirs = change_feeds_read_by_both(spark, path, DeltaTable(path),
                                             ("person_id", "affinity_top_categories", "convert_factors"))
    assert theirs == ours and len(ours) >= len(profiles) > 0


def test_show_finds_a_person_by_an_identity_that_is_not_their_primary_one(spark, nightly):
    graph = lakehouse.read(spark, nightly.cfg.table("identity_graph"))
    profiles = lakehouse.read(spark, nightly.cfg.table("profile_enrichment"))
    other = (graph.join(profiles.select("person_id", "primary_identity_namespace", "primary_identity_id",
                                        "convert_factors"), "person_id")
             .where((F.col("namespace") != F.col("primary_identity_namespace")) & F.col("convert_factors").isNotNull())
             .first())
    assert other is not None
    code, printed = _run(nightly, "show", "--identity", f"{other['namespace']}:{other['id']}", "--json")
    shown = json.loads(printed)
    assert code == 0 and shown["person_id"] == other["person_id"]
    assert shown["primary_identity_id"] == other["primary_identity_id"] and len(shown["convert_factors"]) == 3
    code, text = _run(nightly, "show", "--identity", f"{other['namespace']}:{other['id']}")
    assert code == 0 and f"primary identity {other['primary_identity_namespace']}:" in text
    factor = shown["convert_factors"][0]
    assert f"{factor['feature']} = " in text and f"{factor['direction']} it, {factor['importance']}" in text


@pytest.mark.parametrize("identity, fragment", [
    ("CRMID:nobody-has-this", "no person holds the identity CRMID:nobody-has-this"),
    ("just-an-id", "--identity must be NAMESPACE:ID"),
])
def test_show_of_an_unknown_or_malformed_identity_exits_2_with_one_line(nightly, capsys, identity, fragment):
    assert main(["show", "--identity", identity, "--set", f"lakehouse.root={nightly.root}"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0]
