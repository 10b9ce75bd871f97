"""The commands that read the profile table for people and systems downstream:
`enrich changes`, `enrich export` and `enrich show`."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date, datetime
from typing import TextIO

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from pipelines.core import lakehouse
from pipelines.core.config import Config
from pipelines.core.errors import BadInputError
from pipelines.identity.graph import people_holding
from pipelines.models.specs import (AFFINITY, CONTENT_AFFINITY, LIFETIME_VALUE, OTHER_MODELS, PRODUCT_AFFINITY,
                                   SEGMENTS, enabled, propensity_specs, regression_specs)
from pipelines.publish.changes import CHANGE, TABLE_VERSION, changes_since
from pipelines.publish.profile_table import KEY, RANKED_ITEMS
from pipelines.publish.xdm_export import field_group_schema, xdm_profiles

log = logging.getLogger("enrich")


def _json_default(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _plain(value):
    """Spark Row values -> JSON-ready Python values (rows and nested rows become dicts)."""
    if hasattr(value, "asDict"):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _stream_json_lines(frame: DataFrame, out: TextIO) -> int:
    # toLocalIterator holds one partition at a time on the driver, not the whole result.
    written = 0
    for row in frame.toLocalIterator():
        out.write(json.dumps(_plain(row), default=_json_default, sort_keys=False) + "\n")
        written += 1
    return written


# Written into every folder `changes --out` and `export --out` fill, naming the command: the
# only non-empty folder either will overwrite is one it wrote before.
MARKER = "_enrich_output.json"


def _claim_output(spark: SparkSession, cfg: Config, out_dir: str, kind: str) -> None:
    """Refuse (exit code 2) a folder inside the lakehouse, or a non-empty one that is not an
    earlier output of the same command: either would be overwritten, recursively."""
    target, root = lakehouse.qualified(spark, out_dir), lakehouse.qualified(spark, cfg.root)
    if target == root or target.startswith(root + "/") or root.startswith(target + "/"):
        raise BadInputError(f"--out {out_dir} is inside the lakehouse ({cfg.root}) or holds it; choose a folder "
                            "outside it")
    entries = lakehouse.folder_entries(spark, out_dir)
    if not entries:
        return
    if MARKER not in entries:
        raise BadInputError(f"--out {out_dir} is not empty and was not written by `enrich {kind}`; choose an empty "
                            "or new folder")
    written_by = json.loads(lakehouse.read_text(spark, f"{out_dir.rstrip('/')}/{MARKER}")).get("command")
    if written_by != kind:
        raise BadInputError(f"--out {out_dir} holds the output of `enrich {written_by}`, not of `enrich {kind}`")


def _mark_output(spark: SparkSession, out_dir: str, kind: str) -> None:
    lakehouse.write_text(spark, f"{out_dir.rstrip('/')}/{MARKER}", json.dumps({"command": kind}) + "\n")


def changes(spark: SparkSession, cfg: Config, since_version: int, out_dir: str | None) -> int:
    path = cfg.table("profile_enrichment")
    if out_dir:
        _claim_output(spark, cfg, out_dir, "changes")
    changed, latest = changes_since(spark, path, since_version)
    if out_dir:
        written = _write_json_lines(changed, out_dir)
        _mark_output(spark, out_dir, "changes")
        print(f"{written} changed people (versions {since_version + 1}..{latest}) written to {out_dir}")
    else:
        written = _stream_json_lines(changed.orderBy(TABLE_VERSION, KEY), sys.stdout)
        log.info("%d changed people, versions %d..%d of %s", written, since_version + 1, latest, path)
    return 0


def _write_json_lines(frame: DataFrame, out_dir: str) -> int:
    """Write `frame` as JSON lines; how many rows (counted from the cached rows written)."""
    cached = frame.cache()
    try:
        rows = cached.count()
        cached.write.mode("overwrite").json(out_dir)
    finally:
        cached.unpersist()
    return rows


def attribute_prefixes(cfg: Config) -> list[str]:
    prefixes = [spec.prefix for spec in propensity_specs(cfg) + regression_specs(cfg)]
    prefixes += [str(cfg.get(f"models.{key}.profile_prefix")) for key in OTHER_MODELS if enabled(cfg, key)]
    return prefixes + (["engagement"] if cfg.get("engagement.enabled") else [])


def export(spark: SparkSession, cfg: Config, out_dir: str, since_version: int | None) -> int:
    path = cfg.table("profile_enrichment")
    _claim_output(spark, cfg, out_dir, "export")
    tenant = str(cfg.get("publish.xdm.tenant"))
    if since_version is None:
        rows, what = lakehouse.read(spark, path, "publish").withColumn(CHANGE, F.lit("current")), "every profile"
    else:
        changed, latest = changes_since(spark, path, since_version)
        rows, what = changed.drop(TABLE_VERSION), f"profiles changed in versions {since_version + 1}..{latest}"
    # Each row is exported, or counted as deleted or without an identity: one pass over cached rows.
    kind = (F.when(F.col(CHANGE) == "delete", "deleted")
            .when(F.col("primary_identity_id").isNull(), "without_identity").otherwise("exported"))
    classified = rows.withColumn("_export_kind", kind).cache()
    try:
        counts = {r["_export_kind"]: r["count"] for r in classified.groupBy("_export_kind").count().collect()}
        records = (classified.where(F.col("_export_kind") == "exported").drop("_export_kind", CHANGE)
                   .transform(xdm_profiles(tenant, attribute_prefixes(cfg))))
        records.write.mode("overwrite").json(f"{out_dir.rstrip('/')}/profiles")
    finally:
        classified.unpersist()
    schema = json.dumps(field_group_schema(records.schema, tenant), indent=2) + "\n"
    lakehouse.write_text(spark, f"{out_dir.rstrip('/')}/schema.json", schema)
    _mark_output(spark, out_dir, "export")
    print(f"exported {counts.get('exported', 0)} XDM profile records ({what}) to {out_dir}/profiles, "
          f"field group schema {out_dir}/schema.json")
    if counts.get("without_identity"):
        print(f"not exported: {counts['without_identity']} people without a primary identity "
              "(see the profile_enrichment checks)")
    if counts.get("deleted"):
        print(f"not exported: {counts['deleted']} deleted rows (XDM profile records cannot delete a profile)")
    return 0


def parse_identity(text: str) -> tuple[str, str]:
    namespace, sep, identity = text.partition(":")
    if not sep or not namespace or not identity:
        raise BadInputError(f"--identity must be NAMESPACE:ID (e.g. Email:ann@example.com), got {text!r}")
    return namespace, identity


def find_profile(spark: SparkSession, cfg: Config, namespace: str, identity: str) -> dict:
    """The profile row of the person holding `namespace:identity` (any of their identities)."""
    people = people_holding(lakehouse.read(spark, cfg.table("identity_graph"), "ingest"), namespace, identity,
                            cfg.get("identity.case_insensitive_namespaces", []) or [])
    if not people:
        raise BadInputError(f"no person holds the identity {namespace}:{identity}")
    person = people[0]
    row = (lakehouse.read(spark, cfg.table("profile_enrichment"), "publish")
           .where(F.col(KEY) == person).limit(1).collect())
    if not row:
        raise BadInputError(f"{namespace}:{identity} is person {person}, who has no profile attributes yet "
                            "(not scored by any model)")
    return _plain(row[0])


def show(spark: SparkSession, cfg: Config, identity_text: str, as_json: bool) -> int:
    namespace, identity = parse_identity(identity_text)
    profile = find_profile(spark, cfg, namespace, identity)
    if as_json:
        print(json.dumps(profile, default=_json_default, indent=2))
    else:
        print(render_profile(profile, cfg, f"{namespace}:{identity}"))
    return 0


def render_profile(profile: dict, cfg: Config, asked: str) -> str:
    """A person's attributes for a terminal: one block per insight, factors under each score."""
    def fmt(value, digits: int = 3) -> str:
        if value is None:
            return "-"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    primary = f"{profile['primary_identity_namespace']}:{profile['primary_identity_id']}"
    lines = [f"person {profile[KEY]} (asked for {asked}; primary identity {primary})",
             f"scored {fmt(profile['score_date'])} as of {fmt(profile['as_of_date'])}, run {profile['run_id']}"]
    if profile.get("expired_on"):
        lines.append(f"attributes expired on {fmt(profile['expired_on'])}: no model has scored this person since")
    for spec in propensity_specs(cfg):
        p = spec.prefix
        lines.append(f"  {p:<10} probability {fmt(profile.get(f'{p}_probability'))}  score "
                     f"{fmt(profile.get(f'{p}_score'))}  percentile {fmt(profile.get(f'{p}_percentile'))}  "
                     f"{fmt(profile.get(f'{p}_bucket'))}  (model v{fmt(profile.get(f'{p}_model_version'))})")
        for factor in profile.get(f"{p}_factors") or []:
            lines.append(f"      {factor['feature']} = {fmt(factor['value'], 2)}: {factor['direction']} it, "
                         f"{factor['importance']} ({factor['contribution']:+.2f} log-odds)")
    for spec in regression_specs(cfg):
        p = spec.prefix
        lines.append(f"  {p:<10} prediction {fmt(profile.get(f'{p}_prediction'), 2)}  percentile "
                     f"{fmt(profile.get(f'{p}_percentile'))}  {fmt(profile.get(f'{p}_bucket'))}  "
                     f"(model v{fmt(profile.get(f'{p}_model_version'))})")
    if enabled(cfg, LIFETIME_VALUE):
        p = cfg.get("models.lifetime_value.profile_prefix")
        lines.append(f"  {'value':<10} expected {fmt(profile.get(f'{p}_expected_value'), 2)} "
                     f"{fmt(profile.get(f'{p}_currency'))} from {fmt(profile.get(f'{p}_expected_purchases'), 2)} "
                     f"purchases, P(alive) {fmt(profile.get(f'{p}_p_alive'))}, percentile "
                     f"{fmt(profile.get(f'{p}_value_percentile'))}")
    if enabled(cfg, AFFINITY):
        p = cfg.get("models.affinity.profile_prefix")
        top = ", ".join(f"{c['category']} {c['affinity']:.2f}" for c in profile.get(f"{p}_top_categories") or [])
        lines.append(f"  {'affinity':<10} {top or '-'}")
    for key, item, label in ((PRODUCT_AFFINITY, "sku", "products"), (CONTENT_AFFINITY, "section", "content")):
        if enabled(cfg, key):
            p = cfg.get(f"models.{key}.profile_prefix")
            top = ", ".join(f"{r[item]} {r['score']:.2f}" for r in profile.get(f"{p}_{RANKED_ITEMS[item]}") or [])
            lines.append(f"  {label:<10} {top or '-'}")
    if cfg.get("engagement.enabled"):
        lines.append(f"  {'engagement':<10} {fmt(profile.get('engagement_score'))} / 100")
    if enabled(cfg, SEGMENTS):
        p = cfg.get("models.segments.profile_prefix")
        lines.append(f"  {'segment':<10} {fmt(profile.get(f'{p}_id'))} {fmt(profile.get(f'{p}_name'))}")
    return "\n".join(lines)
