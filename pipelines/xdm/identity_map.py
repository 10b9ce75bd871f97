"""Identity helpers: list a record's identities and pick its primary one.

An XDM `identityMap` maps a namespace (ECID, CRMID, Email, ...) to a list of
`{id, primary, authenticatedState}` items. These helpers are Column -> Column, built
from Spark's higher-order functions, so they run on executors without Python UDFs.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column

# Rank given to a namespace missing from the priority list: after every listed one.
UNLISTED_RANK = 1_000_000


def namespace_codes(known: Sequence[str], aliases: Mapping[str, str]) -> dict[str, str]:
    """How an identityMap key is read: lower-cased key -> the namespace code the pipeline uses.
    The `known` codes (the priority list) match whatever their case (`EMAIL`, `email` ->
    `Email`); `aliases` (conf's `identity.namespace_aliases`, also matched without case) map
    other spellings, and the numeric ids of namespace URIs, to a code."""
    codes = {str(code).lower(): str(code) for code in known}
    codes.update({str(alias).lower(): str(code) for alias, code in aliases.items()})
    return codes


def identities(identity_map: Column) -> Column:
    """array<struct<namespace, id, primary>> of every non-empty id in an identityMap."""
    per_namespace = F.transform(
        F.map_entries(identity_map),
        lambda entry: F.transform(
            entry["value"],
            lambda item: F.struct(
                entry["key"].alias("namespace"),
                item["id"].alias("id"),
                F.coalesce(item["primary"], F.lit(False)).alias("primary"),
            ),
        ),
    )
    flat = F.flatten(F.coalesce(per_namespace, F.array()))
    return F.filter(flat, lambda ident: ident["id"].isNotNull() & (F.trim(ident["id"]) != ""))


def namespace_rank(namespace: Column, priority: Sequence[str]) -> Column:
    """1-based position of `namespace` in `priority`; unlisted namespaces rank last."""
    position = F.array_position(F.array(*[F.lit(ns) for ns in priority]), namespace)
    return F.when(position > 0, position).otherwise(F.lit(UNLISTED_RANK))


def _best(candidates: Column, priority: Sequence[str]) -> Column:
    ranked = F.transform(
        candidates,
        lambda ident: F.struct(
            namespace_rank(ident["namespace"], priority).alias("rank"),
            ident["id"].alias("id"),
            ident["namespace"].alias("namespace"),
        ),
    )
    return F.array_min(ranked)


def primary_identity(identity_list: Column, priority: Sequence[str]) -> Column:
    """struct<rank, id, namespace>: the item flagged primary, else the best by `priority`.

    Ties (several flagged, or several ids in the best namespace) go to the smallest id,
    so the choice never depends on the order fields arrived in.
    """
    flagged = F.filter(identity_list, lambda ident: ident["primary"])
    candidates = F.when(F.size(flagged) > 0, flagged).otherwise(identity_list)
    return _best(candidates, priority)


def anchor_identity(identity_list: Column, priority: Sequence[str]) -> Column:
    """struct<rank, id, namespace>: the best identity by `priority` alone (flags ignored)."""
    return _best(identity_list, priority)
