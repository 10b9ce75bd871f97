"""The identity graph: every identity maps to one `person_id`, updated run by run.

Records that carry several identities (an ECID and a CRMID once a visitor logs in) link
them; people are the connected components of those links, computed in Spark.

Incremental: a run resolves only the identities of its new records. Identities already in
the graph stand for their person, so the components are computed over a small graph of
people and new identities, never over the whole history again.

* A component without a known person becomes a new person, named by a hash of its best
  identity (namespace priority, then smallest id): stable, no sequence needed.
* A component that holds several known people merges them: the person whose naming
  identity ranks best survives, the others' identities (and so their history) move to it,
  and the merge is recorded.

Limits, like Platform's graph guardrails, so one shared device or family email cannot
collapse many customers into one:
* an identity linked in one run to more than `max_identities_per_person` identities, or to
  two ids of a namespace configured as unique (one CRMID per person), is *shared*: its links
  are not followed;
* a component that would exceed the cap, or hold two ids of a unique namespace, does not
  merge known people; its new identities form people among themselves where that is
  within the limits, and stand alone otherwise.
Every link or merge not made is recorded as a cut with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Callable, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from pipelines.xdm.identity_map import anchor_identity, identities, namespace_rank

PERSON_ID_LENGTH = 24
MAX_ITERATIONS = 100
_SEP = "\u0001"

GRAPH_COLUMNS = ("namespace", "id", "person_id", "anchor_namespace", "anchor_id", "first_seen_run_date",
                 "updated_run_date")


@dataclass(frozen=True)
class IdentityRules:
    priority: Sequence[str]
    unique_namespaces: Sequence[str]
    max_identities_per_person: int
    local_max_links: int = 200_000


@dataclass
class Resolution:
    """What a batch changes: graph rows to upsert, merges made, links and merges refused;
    `graph_unchanged` when the batch can change no row of the graph (see `_changes_nothing`)."""
    assignments: DataFrame   # GRAPH_COLUMNS for new identities and for identities that moved
    merges: DataFrame        # merged_person_id, surviving_person_id, identities_moved, run_date
    cuts: DataFrame          # namespace, id, reason, run_date
    graph_unchanged: bool = False


MERGES_SCHEMA = "merged_person_id string, surviving_person_id string, identities_moved bigint, run_date date"


def person_id_of(namespace: Column, identity: Column) -> Column:
    """Stable, opaque person id derived from the identity that names the person."""
    return F.substring(F.sha2(F.concat_ws(":", namespace, identity), 256), 1, PERSON_ID_LENGTH)


def _node(namespace: Column, identity: Column) -> Column:
    return F.concat_ws(_SEP, namespace, identity)


def _symmetric(edges: DataFrame) -> DataFrame:
    return (edges.unionByName(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))
            .where(F.col("u") != F.col("v")).distinct())


def _large_star(edges: DataFrame) -> DataFrame:
    """Each node's larger neighbours move onto the smallest node around it."""
    smallest = edges.groupBy("u").agg(F.least(F.min("v"), F.first("u")).alias("m"))
    return _symmetric(edges.join(smallest, "u").where(F.col("v") > F.col("u"))
                      .select(F.col("v").alias("u"), F.col("m").alias("v")))


def _small_star(edges: DataFrame) -> DataFrame:
    """Each node and its smaller neighbours move onto the smallest of them."""
    lower = edges.where(F.col("v") < F.col("u"))
    smallest = lower.groupBy("u").agg(F.min("v").alias("m"))
    moved = lower.join(smallest, "u").select(F.col("v").alias("u"), F.col("m").alias("v"))
    return _symmetric(moved.unionByName(smallest.select("u", F.col("m").alias("v"))))


def connected_components(edges: DataFrame) -> DataFrame:
    """Undirected edges (`src`, `dst`, strings) -> (`node`, `component`): the smallest node of
    each component.

    Alternating large-star and small-star rounds (Kiveris et al., "Connected Components in
    MapReduce and Beyond", 2014) turn every component into a star around its smallest node
    in O(log n) rounds, however long its chains; each round is checkpointed so the plan
    stays small."""
    current = _symmetric(edges.select(F.col("src").alias("u"), F.col("dst").alias("v"))).localCheckpoint()
    for _ in range(MAX_ITERATIONS):
        after = _small_star(_large_star(current)).localCheckpoint()
        unchanged = (after.withColumn("new", F.lit(True))
                   .join(current.withColumn("old", F.lit(True)), ["u", "v"], "full_outer")
                   .where(F.col("new").isNull() | F.col("old").isNull()).isEmpty())
        current = after
        if unchanged:
            return current.groupBy(F.col("u").alias("node")).agg(
                F.least(F.min("v"), F.first("u")).alias("component"))
    raise RuntimeError(f"connected components did not converge in {MAX_ITERATIONS} rounds")


def record_stars(records: DataFrame, priority: Sequence[str]) -> DataFrame:
    """Records with `identityMap` -> distinct (a_ns, a_id, b_ns, b_id): each record's best
    identity to every identity of the record, itself included.

    One pass gives both what a batch resolves: its identities (the `b` side) and its links
    (pairs whose ends differ; a star per record is enough for connectivity and stays linear
    in the identities). Listing a record's identities runs Spark's higher-order functions,
    which are interpreted row by row, so one pass costs a third of three."""
    ids = records.select(identities(F.col("identityMap")).alias("ids")).where(F.size("ids") > 0)
    star = ids.select(anchor_identity(F.col("ids"), priority).alias("a"), F.explode("ids").alias("b"))
    return star.select(F.col("a.namespace").alias("a_ns"), F.col("a.id").alias("a_id"),
                       F.col("b.namespace").alias("b_ns"), F.col("b.id").alias("b_id")).distinct()


def star_links(stars: DataFrame) -> DataFrame:
    """The links among `record_stars`: pairs of two different identities."""
    return stars.where((F.col("a_ns") != F.col("b_ns")) | (F.col("a_id") != F.col("b_id")))


def star_identities(stars: DataFrame) -> DataFrame:
    """Distinct (namespace, id) among `record_stars`."""
    return stars.select(F.col("b_ns").alias("namespace"), F.col("b_id").alias("id")).distinct()


def _shared_identities(links: DataFrame, rules: IdentityRules) -> DataFrame:
    """(namespace, id, reason) of identities whose links this run does not follow."""
    both = links.unionByName(links.select(F.col("b_ns").alias("a_ns"), F.col("b_id").alias("a_id"),
                                          F.col("a_ns").alias("b_ns"), F.col("a_id").alias("b_id")))
    cap = rules.max_identities_per_person
    too_many = (both.groupBy(F.col("a_ns").alias("namespace"), F.col("a_id").alias("id"))
                .agg(F.count_distinct("b_ns", "b_id").alias("partners"))
                .where(F.col("partners") > cap)
                .select("namespace", "id", F.format_string(
                    "shared identity: linked to %d identities in one run (cap %d)", "partners", F.lit(cap))
                    .alias("reason")))
    if not rules.unique_namespaces:
        return too_many
    unique = F.array(*[F.lit(ns) for ns in rules.unique_namespaces])
    two_unique = (both.where(F.array_contains(unique, F.col("b_ns")))
                  .groupBy(F.col("a_ns").alias("namespace"), F.col("a_id").alias("id"), "b_ns")
                  .agg(F.count_distinct("b_id").alias("ids"))
                  .where(F.col("ids") > 1)
                  .groupBy("namespace", "id").agg(F.min(F.struct("b_ns", "ids")).alias("worst"))
                  .select("namespace", "id", F.format_string(
                      "shared identity: linked to %d %s ids in one run (one per person)",
                      "worst.ids", "worst.b_ns").alias("reason")))
    return too_many.unionByName(two_unique).groupBy("namespace", "id").agg(F.min("reason").alias("reason"))


def _best_identity(namespace: Column, identity: Column, priority: Sequence[str]) -> Column:
    """A sortable struct: the minimum over a group is its best identity by priority, then id."""
    return F.struct(namespace_rank(namespace, priority).alias("rank"), identity.alias("id"),
                    namespace.alias("namespace"))


def _component_limits(members: DataFrame, rules: IdentityRules) -> DataFrame:
    """members (component, namespace, id) -> (component, within_limits, why) per component."""
    cap = rules.max_identities_per_person
    sizes = members.groupBy("component").agg(F.count(F.lit(1)).alias("identities"))
    if rules.unique_namespaces:
        unique = (members.where(F.col("namespace").isin(list(rules.unique_namespaces)))
                  .groupBy("component", "namespace").agg(F.count_distinct("id").alias("ids"))
                  .where(F.col("ids") > 1)
                  .groupBy("component").agg(F.min(F.struct("namespace", "ids")).alias("clash")))
        sizes = sizes.join(unique, "component", "left")
    else:
        sizes = sizes.withColumn("clash", F.lit(None).cast("struct<namespace:string,ids:bigint>"))
    why = (F.when(F.col("identities") > cap,
                  F.format_string("not linked: the person would have %d identities (cap %d)",
                                  "identities", F.lit(cap)))
           .when(F.col("clash").isNotNull(),
                 F.format_string("not linked: the person would have %d %s ids (one per person)",
                                 "clash.ids", "clash.namespace")))
    return sizes.select("component", why.isNull().alias("within_limits"), why.alias("why"))


def _new_people(members: DataFrame, rules: IdentityRules) -> DataFrame:
    """(component, namespace, id) of new identities -> their person, named by the best identity."""
    best = members.groupBy("component").agg(
        F.min(_best_identity(F.col("namespace"), F.col("id"), rules.priority)).alias("best"))
    return (members.join(best, "component")
            .select("namespace", "id",
                    person_id_of(F.col("best.namespace"), F.col("best.id")).alias("person_id"),
                    F.col("best.namespace").alias("anchor_namespace"), F.col("best.id").alias("anchor_id")))


def _node_edges(links: DataFrame, nodes: DataFrame) -> DataFrame:
    """Identity links (a_ns, a_id, b_ns, b_id) -> (src, dst) between the nodes the identities
    stand for; links whose ends are not both among `nodes`, or meet in one node, drop out."""
    def end(side: str, name: str) -> DataFrame:
        return nodes.select(F.col("namespace").alias(f"{side}_ns"), F.col("id").alias(f"{side}_id"),
                            F.col("node").alias(name))
    return (links.join(end("a", "src"), ["a_ns", "a_id"]).join(end("b", "dst"), ["b_ns", "b_id"])
            .select("src", "dst").where(F.col("src") != F.col("dst")))


def _union_find(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """node -> smallest node of its component, for edges held in memory."""
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: root(node) for node in parent}


def _components_of(nodes: DataFrame, edges: DataFrame, local_max_links: int) -> DataFrame:
    """nodes (node, ...) -> the same rows with `component`; nodes without edges are their own.

    A nightly batch links a few thousand identities: up to `local_max_links` links are
    solved in driver memory (one small collect instead of several Spark rounds); beyond
    that, as for a first load of years of history, in Spark."""
    head = edges.limit(local_max_links + 1).collect()
    if not head:
        return nodes.withColumn("component", F.col("node"))
    if len(head) <= local_max_links:
        pairs = _union_find([(r["src"], r["dst"]) for r in head])
        components = nodes.sparkSession.createDataFrame(list(pairs.items()), "node string, component string")
    else:
        components = connected_components(edges)
    return nodes.join(components, "node", "left").withColumn("component", F.coalesce("component", "node"))


def _changes_nothing(stars: DataFrame, known: DataFrame) -> bool:
    """Whether every identity of the batch is known and each record's identities are one
    person's: then no identity is new, no link joins two people and nobody merges. A night of
    returning people is mostly such a batch; one query answers it, where the resolution
    runs some forty."""
    def person(side: str) -> DataFrame:
        return known.select(F.col("namespace").alias(f"{side}_ns"), F.col("id").alias(f"{side}_id"),
                            F.col("person_id").alias(f"{side}_person"))
    # Each identity of a record is the `b` of a star from the record's anchor `a` (itself too).
    return (stars.join(person("a"), ["a_ns", "a_id"], "left").join(person("b"), ["b_ns", "b_id"], "left")
            .where(F.col("a_person").isNull() | F.col("b_person").isNull()
                   | (F.col("a_person") != F.col("b_person")))
            .isEmpty())


def resolve(graph: DataFrame, records: DataFrame, rules: IdentityRules, run_date: date) -> Resolution:
    """Link the identities of new `records` (with `identityMap`) into the current `graph`."""
    day = F.lit(run_date).cast("date")
    stars = record_stars(records, rules.priority).localCheckpoint()
    batch, links = star_identities(stars), star_links(stars)
    shared = _shared_identities(links, rules)
    known = graph.join(batch, ["namespace", "id"], "left_semi").select("namespace", "id", "person_id")
    if _changes_nothing(stars, known):
        # What the full resolution gives such a batch: no assignment or merge; the shared
        # identities it met are still cut (a person over a cap lowered since, say).
        return Resolution(assignments=graph.select(*GRAPH_COLUMNS).limit(0),
                          merges=graph.sparkSession.createDataFrame([], MERGES_SCHEMA),
                          cuts=shared.withColumn("run_date", day), graph_unchanged=True)
    followed = (links
                .join(shared.select(F.col("namespace").alias("a_ns"), F.col("id").alias("a_id")), ["a_ns", "a_id"],
                      "left_anti")
                .join(shared.select(F.col("namespace").alias("b_ns"), F.col("id").alias("b_id")), ["b_ns", "b_id"],
                      "left_anti"))

    nodes = (batch.join(known, ["namespace", "id"], "left")
             .withColumn("node", F.when(F.col("person_id").isNotNull(), F.concat_ws(_SEP, F.lit("P"), "person_id"))
                         .otherwise(F.concat_ws(_SEP, F.lit("I"), "namespace", "id")))).localCheckpoint()
    placed = _components_of(nodes, _node_edges(followed, nodes), rules.local_max_links).localCheckpoint()

    # Every identity each component would hold: its new identities and all of its known people's.
    person_component = placed.where(F.col("person_id").isNotNull()).select("person_id", "component").distinct()
    people_rows = graph.join(person_component, "person_id")
    members = (placed.where(F.col("person_id").isNull()).select("component", "namespace", "id")
               .unionByName(people_rows.select("component", "namespace", "id")))
    limits = _component_limits(members, rules).localCheckpoint()

    # Within the limits: known people merge into the best-named one, new identities join it.
    survivors = (people_rows.select("component", "person_id", "anchor_namespace", "anchor_id").distinct()
                 .groupBy("component").agg(F.min(F.struct(
                     namespace_rank(F.col("anchor_namespace"), rules.priority).alias("rank"),
                     F.col("anchor_id"), F.col("anchor_namespace"), F.col("person_id"))).alias("survivor"))
                 .join(limits.where("within_limits"), "component", "left_semi"))
    new_identities = placed.where(F.col("person_id").isNull()).select("component", "namespace", "id")
    joining = (new_identities.join(survivors, "component")
               .select("namespace", "id", F.col("survivor.person_id").alias("person_id"),
                       F.col("survivor.anchor_namespace").alias("anchor_namespace"),
                       F.col("survivor.anchor_id").alias("anchor_id")))
    fresh_ok = (new_identities.join(limits.where("within_limits"), "component", "left_semi")
                .join(survivors, "component", "left_anti"))
    fresh = _new_people(fresh_ok, rules)

    merged_rows = (people_rows.join(survivors, "component")
                   .where(F.col("person_id") != F.col("survivor.person_id")))
    moved = merged_rows.select("namespace", "id", F.col("survivor.person_id").alias("person_id"),
                               F.col("survivor.anchor_namespace").alias("anchor_namespace"),
                               F.col("survivor.anchor_id").alias("anchor_id"), "first_seen_run_date")
    merges = (merged_rows.groupBy(F.col("person_id").alias("merged_person_id"),
                                  F.col("survivor.person_id").alias("surviving_person_id"))
              .agg(F.count(F.lit(1)).alias("identities_moved"))
              .withColumn("run_date", day))

    # Over the limits: known people stay apart; new identities link only among themselves.
    over_limits = limits.where(~F.col("within_limits"))
    refused = new_identities.join(over_limits, "component")
    if over_limits.isEmpty():
        apart = fresh.limit(0)
    else:
        apart = _resolve_apart(refused, followed, rules)

    assignments = (joining.unionByName(fresh).unionByName(apart)
                   .withColumn("first_seen_run_date", day)
                   .unionByName(moved)
                   .withColumn("updated_run_date", day)
                   .select(*GRAPH_COLUMNS))
    cuts = (shared.unionByName(refused.select("namespace", "id", F.col("why").alias("reason")))
            .withColumn("run_date", day))
    return Resolution(assignments=assignments, merges=merges, cuts=cuts)


def _resolve_apart(refused: DataFrame, followed: DataFrame, rules: IdentityRules) -> DataFrame:
    """New identities of components over the limits -> people formed among themselves where that
    is within the limits, else one person each."""
    ids = refused.select("namespace", "id", F.concat_ws(_SEP, "namespace", "id").alias("node"))
    placed = _components_of(ids, _node_edges(followed, ids), rules.local_max_links)
    limits = _component_limits(placed.select("component", "namespace", "id"), rules)
    grouped = placed.join(limits, "component").withColumn(
        "component", F.when(F.col("within_limits"), F.col("component")).otherwise(F.col("node")))
    return _new_people(grouped.select("component", "namespace", "id"), rules)


def resolved_person(graph: DataFrame, priority: Sequence[str]) -> Callable[[DataFrame], DataFrame]:
    """Attach `person_id` to records (with `identityMap`) through their best identity by
    priority: when a shared identity was not linked, the record goes to the person of its
    stronger identity (the CRMID, not the kiosk's ECID)."""
    def _apply(records: DataFrame) -> DataFrame:
        best = anchor_identity(identities(F.col("identityMap")), priority)
        lookup = graph.select(F.col("namespace").alias("_ns"), F.col("id").alias("_id_value"), "person_id")
        keyed = records.withColumn("_ns", best["namespace"]).withColumn("_id_value", best["id"])
        return keyed.join(lookup, ["_ns", "_id_value"], "left").drop("_ns", "_id_value")
    return _apply


def people_holding(graph: DataFrame, namespace: str, identity: str,
                   case_insensitive: Sequence[str] = ()) -> list[str]:
    """The person ids holding `namespace:identity`: namespaces match without case, ids
    without surrounding spaces, and without case in the `case_insensitive` namespaces
    (e-mail addresses). One at most in a consistent graph; a handful, so collected."""
    id_matches = ((F.lower(F.trim("id")) == identity.strip().lower())
                  if namespace.lower() in {n.lower() for n in case_insensitive}
                  else F.trim("id") == identity.strip())
    return sorted(r["person_id"] for r in graph.where((F.lower("namespace") == namespace.lower()) & id_matches)
                  .select("person_id").distinct().collect())


def primary_identity_per_person(graph: DataFrame, priority: Sequence[str]) -> DataFrame:
    """(person_id, primary_identity_namespace, primary_identity_id): each person's best identity."""
    best = graph.groupBy("person_id").agg(F.min(_best_identity(F.col("namespace"), F.col("id"), priority)).alias("b"))
    return best.select("person_id", F.col("b.namespace").alias("primary_identity_namespace"),
                       F.col("b.id").alias("primary_identity_id"))
