"""The identity graph on small hand-drawn graphs: chains, merges across runs, the limits."""

from datetime import date

import pyspark.sql.functions as F
from pyspark.sql import types as T

from pipelines.identity.graph import (IdentityRules, connected_components, person_id_of,
                                       primary_identity_per_person, resolve)
from pipelines.ingest.run import GRAPH_SCHEMA
from pipelines.xdm.schema import IDENTITY_MAP

RULES = IdentityRules(priority=["CRMID", "Email", "ECID"], unique_namespaces=["CRMID"], max_identities_per_person=5)
DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)
RECORDS = T.StructType([T.StructField("identityMap", IDENTITY_MAP)])


def _records(spark, *records):
    """Each record as namespace:id strings, e.g. ("ECID:e1", "CRMID:c1")."""
    rows = []
    for record in records:
        identity_map: dict[str, list] = {}
        for identity in record:
            namespace, value = identity.split(":", 1)
            identity_map.setdefault(namespace, []).append({"id": value, "primary": None, "authenticatedState": None})
        rows.append((identity_map,))
    return spark.createDataFrame(rows, RECORDS)


def _apply(spark, graph, resolution):
    """The graph after a resolution, as the ingest step writes it (upsert on namespace, id)."""
    kept = graph.join(resolution.assignments, ["namespace", "id"], "left_anti")
    return kept.unionByName(resolution.assignments).localCheckpoint()


def _people(graph):
    """{frozenset of identities} per person."""
    groups: dict[str, set] = {}
    for row in graph.collect():
        groups.setdefault(row["person_id"], set()).add(f"{row['namespace']}:{row['id']}")
    return {frozenset(ids) for ids in groups.values()}


def _run(spark, graph, day, *records, rules=RULES):
    resolution = resolve(graph, _records(spark, *records), rules, day)
    return _apply(spark, graph, resolution), resolution


def _empty(spark):
    return spark.createDataFrame([], GRAPH_SCHEMA)


def test_components_of_a_long_shuffled_chain_and_separate_pairs(spark):
    order = [7, 3, 9, 0, 5, 1, 8, 2, 6, 4]
    chain = [(f"n{order[i]:02d}", f"n{order[i + 1]:02d}") for i in range(len(order) - 1)]
    edges = spark.createDataFrame(chain + [("a", "b"), ("c", "b")], "src string, dst string")
    components = {r["node"]: r["component"] for r in connected_components(edges).collect()}
    assert {components[f"n{i:02d}"] for i in range(10)} == {"n00"}
    assert components["a"] == components["b"] == components["c"] == "a"


def test_devices_of_a_logged_in_customer_become_one_person_named_by_the_crm_id(spark):
    graph, resolution = _run(spark, _empty(spark), DAY1,
                             ("ECID:e1",), ("ECID:e1", "CRMID:c1"), ("ECID:e2", "CRMID:c1"), ("ECID:e3",))
    assert _people(graph) == {frozenset({"ECID:e1", "ECID:e2", "CRMID:c1"}), frozenset({"ECID:e3"})}
    customer = spark.range(1).select(person_id_of(F.lit("CRMID"), F.lit("c1"))).first()[0]
    assert {r["person_id"] for r in graph.where(F.col("id").isin("e1", "e2", "c1")).collect()} == {customer}
    assert resolution.merges.count() == 0 and resolution.cuts.count() == 0


def test_a_chain_links_transitively_not_just_one_hop(spark):
    graph, _ = _run(spark, _empty(spark), DAY1,
                    ("ECID:e1", "Email:a@x"), ("Email:a@x", "ECID:e2"), ("ECID:e2", "ECID:e3"))
    assert _people(graph) == {frozenset({"ECID:e1", "Email:a@x", "ECID:e2", "ECID:e3"})}


def test_new_evidence_merges_two_people_and_the_better_named_one_survives(spark):
    graph, _ = _run(spark, _empty(spark), DAY1, ("ECID:e1",), ("CRMID:c1", "Email:a@x"))
    anonymous = graph.where(F.col("id") == "e1").first()["person_id"]
    customer = graph.where(F.col("id") == "c1").first()["person_id"]
    graph, resolution = _run(spark, graph, DAY2, ("ECID:e1", "Email:a@x"))
    assert _people(graph) == {frozenset({"ECID:e1", "CRMID:c1", "Email:a@x"})}
    assert {r["person_id"] for r in graph.collect()} == {customer}
    merge = resolution.merges.first()
    assert (merge["merged_person_id"], merge["surviving_person_id"], merge["identities_moved"]) == \
        (anonymous, customer, 1)
    moved = graph.where(F.col("id") == "e1").first()
    assert (moved["first_seen_run_date"], moved["updated_run_date"]) == (DAY1, DAY2)


def test_a_rerun_of_the_same_records_changes_nothing(spark):
    records = (("ECID:e1", "CRMID:c1"), ("ECID:e2", "Email:b@x"))
    graph, _ = _run(spark, _empty(spark), DAY1, *records)
    again, resolution = _run(spark, graph, DAY1, *records)
    assert resolution.assignments.count() == 0 and resolution.merges.count() == 0
    assert sorted(again.collect()) == sorted(graph.collect())


def test_a_batch_of_known_people_leaves_the_graph_as_it_is_and_a_new_link_does_not(spark):
    graph, _ = _run(spark, _empty(spark), DAY1, ("ECID:e1", "CRMID:c1"), ("ECID:e2",), ("Email:b@x", "ECID:e3"))
    # Returning people, each record within one person: nothing for the resolution to do.
    again, resolution = _run(spark, graph, DAY2, ("ECID:e1",), ("CRMID:c1", "ECID:e1"), ("ECID:e3", "Email:b@x"))
    assert resolution.graph_unchanged
    assert (resolution.assignments.count(), resolution.merges.count(), resolution.cuts.count()) == (0, 0, 0)
    assert sorted(again.collect()) == sorted(graph.collect())
    # Known identities of two people in one record, or one identity never seen: resolved in full.
    merged, resolution = _run(spark, graph, DAY2, ("ECID:e1", "ECID:e2"))
    assert not resolution.graph_unchanged and resolution.merges.count() == 1
    assert frozenset({"ECID:e1", "ECID:e2", "CRMID:c1"}) in _people(merged)
    grown, resolution = _run(spark, graph, DAY2, ("ECID:e2", "ECID:e4"))
    assert not resolution.graph_unchanged
    assert frozenset({"ECID:e2", "ECID:e4"}) in _people(grown)


def test_a_shared_device_seen_with_many_customers_in_one_run_links_none_of_them(spark):
    logins = [("ECID:kiosk", f"CRMID:c{i}", f"ECID:own{i}") for i in range(8)]
    cap_only = IdentityRules(priority=RULES.priority, unique_namespaces=[], max_identities_per_person=5)
    graph, resolution = _run(spark, _empty(spark), DAY1, *logins, rules=cap_only)
    people = _people(graph)
    assert frozenset({"ECID:kiosk"}) in people
    assert all(frozenset({f"CRMID:c{i}", f"ECID:own{i}"}) in people for i in range(8))
    (cut,) = resolution.cuts.where(F.col("id") == "kiosk").collect()
    assert cut["reason"] == "shared identity: linked to 8 identities in one run (cap 5)"


def test_a_device_shared_by_two_customers_is_cut_by_the_one_crm_id_rule(spark):
    graph, resolution = _run(spark, _empty(spark), DAY1, ("ECID:tablet", "CRMID:c1"), ("ECID:tablet", "CRMID:c2"))
    assert _people(graph) == {frozenset({"ECID:tablet"}), frozenset({"CRMID:c1"}), frozenset({"CRMID:c2"})}
    assert resolution.cuts.first()["reason"] == "shared identity: linked to 2 CRMID ids in one run (one per person)"


def test_across_runs_a_second_customer_on_a_known_device_does_not_merge_people(spark):
    graph, _ = _run(spark, _empty(spark), DAY1, ("ECID:tablet", "CRMID:c1"))
    graph, resolution = _run(spark, graph, DAY2, ("ECID:tablet", "CRMID:c2"), ("CRMID:c2", "ECID:phone2"))
    assert _people(graph) == {frozenset({"ECID:tablet", "CRMID:c1"}), frozenset({"CRMID:c2", "ECID:phone2"})}
    assert resolution.merges.count() == 0
    reasons = {r["id"]: r["reason"] for r in resolution.cuts.collect()}
    assert reasons == {"c2": "not linked: the person would have 2 CRMID ids (one per person)",
                       "phone2": "not linked: the person would have 2 CRMID ids (one per person)"}


def test_a_person_never_grows_past_the_cap(spark):
    graph, _ = _run(spark, _empty(spark), DAY1, ("CRMID:c1", "ECID:d1", "ECID:d2", "ECID:d3"))
    graph, resolution = _run(spark, graph, DAY2, ("CRMID:c1", "ECID:d4", "ECID:d5"))
    assert max(len(p) for p in _people(graph)) <= RULES.max_identities_per_person
    # Linked only through c1 (a record links its identities to its best one), so each stands alone.
    assert {frozenset({"ECID:d4"}), frozenset({"ECID:d5"})} <= _people(graph)
    assert sorted((r["id"], r["reason"]) for r in resolution.cuts.collect()) == [
        ("d4", "not linked: the person would have 6 identities (cap 5)"),
        ("d5", "not linked: the person would have 6 identities (cap 5)")]


def test_a_person_keeps_its_id_and_shows_its_best_identity_as_primary(spark):
    graph, _ = _run(spark, _empty(spark), DAY1, ("ECID:e1",))
    graph, _ = _run(spark, graph, DAY2, ("ECID:e1", "Email:a@x"))
    (row,) = primary_identity_per_person(graph, RULES.priority).collect()
    named_by_ecid = spark.range(1).select(person_id_of(F.lit("ECID"), F.lit("e1"))).first()[0]
    assert (row["person_id"], row["primary_identity_namespace"], row["primary_identity_id"]) == \
        (named_by_ecid, "Email", "a@x")
