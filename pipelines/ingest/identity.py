"""Identity resolution: every identity seen maps to one `person_id`.

Records that carry several identities (an ECID and a CRMID once a visitor logs in)
link them. Each identity's anchor is the best identity (by namespace priority, then
smallest id) among all records it appears on; `person_id` is a hash of the anchor, so
it is stable from run to run and needs no sequence. One hop of linking resolves the
common cases (devices of a logged-in customer, a guest checkout by email).
"""

from __future__ import annotations

from typing import Callable, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from pipelines.xdm.identity import anchor_identity, identities

PERSON_ID_LENGTH = 24


def person_id_of(namespace: Column, identity: Column) -> Column:
    """Stable, opaque person id derived from an anchor identity."""
    return F.substring(F.sha2(F.concat_ws(":", namespace, identity), 256), 1, PERSON_ID_LENGTH)


def identity_graph(priority: Sequence[str]) -> Callable[[DataFrame], DataFrame]:
    """Frame with an `identityMap` column -> (namespace, id, person_id, anchor_namespace, anchor_id)."""
    def _apply(records: DataFrame) -> DataFrame:
        with_ids = records.select(identities(F.col("identityMap")).alias("ids"))
        linked = (with_ids.where(F.size("ids") > 0)
                  .select(anchor_identity(F.col("ids"), priority).alias("anchor"), F.explode("ids").alias("ident"))
                  .select(F.col("ident.namespace").alias("namespace"), F.col("ident.id").alias("id"), "anchor"))
        resolved = linked.groupBy("namespace", "id").agg(F.min("anchor").alias("anchor"))
        return resolved.select(
            "namespace", "id",
            person_id_of(F.col("anchor.namespace"), F.col("anchor.id")).alias("person_id"),
            F.col("anchor.namespace").alias("anchor_namespace"),
            F.col("anchor.id").alias("anchor_id"),
        )
    return _apply


def with_person_id(graph: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Attach `person_id` to records through their primary identity."""
    def _apply(records: DataFrame) -> DataFrame:
        lookup = graph.select(F.col("namespace").alias("primary_namespace"),
                              F.col("id").alias("primary_id"), "person_id")
        return records.join(lookup, ["primary_namespace", "primary_id"], "left")
    return _apply
