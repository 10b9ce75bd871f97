"""Product and content affinity's candidates on hand-made interactions whose right answer
is known (pipelines/models/item_affinity.py)."""

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipelines.core.errors import BadInputError
from pipelines.models import grouped_ranking
from pipelines.models.affinity import PRODUCTS, content, future_categories, interaction_strengths, strengths_as_of
from pipelines.models.item_affinity import (events_window, exclusions_as_of, groups_as_of, neighbours_of,
                                            one_off_purchases, product_categories, ranking_metrics, recommend)
from pipelines.models.training.affinity import half_life_choices

STRENGTHS = "person_id string, sku string, strength double"
EVENTS = ("person_id string, event_id string, event_date date, product_views double, cart_adds double, "
          "cart_removals double, is_purchase boolean, page_views double, skus array<string>, site_section string")


def _top(frame, item="sku"):
    """{person: [items, best first]}"""
    got = {}
    for row in frame.orderBy("person_id", "rank").collect():
        got.setdefault(row["person_id"], []).append(row[item])
    return got


def _strengths(spark, rows):
    return spark.createDataFrame(rows, STRENGTHS)


def test_popularity_gives_everyone_the_most_popular_products(spark):
    strengths = _strengths(spark, [("a", "X", 1.0), ("b", "Y", 5.0), ("c", "Y", 1.0), ("c", "Z", 2.0)])
    top = _top(recommend(strengths, {"method": "popularity"}, 2, "sku"))
    assert top == {p: ["Y", "Z"] for p in "abc"}


def test_history_puts_a_persons_own_products_first_and_fills_with_popular_ones(spark):
    strengths = _strengths(spark, [("a", "X", 3.0), ("a", "W", 1.0)] + [(f"o{i}", "Y", 2.0) for i in range(5)])
    top = _top(recommend(strengths, {"method": "history", "prior_strength": 0.5}, 3, "sku"))
    assert top["a"] == ["X", "W", "Y"]
    assert top["o0"][0] == "Y"


def test_co_occurrence_recommends_what_people_with_the_same_products_chose(spark):
    # Many people who looked at X also looked at Y; Z is more popular, among other people.
    rows = [(f"xy{i}", sku, 1.0) for i in range(6) for sku in ("X", "Y")]
    rows += [(f"z{i}", "Z", 1.0) for i in range(10)] + [("a", "X", 1.0)]
    strengths = _strengths(spark, rows)
    base = {"prior_strength": 1.0, "neighbours": 10, "max_history": 10}
    history = _top(recommend(strengths, {"method": "history", **base}, 2, "sku"))
    assert history["a"] == ["X", "Z"]
    co_occurring = _top(recommend(strengths, {"method": "co_occurrence", "neighbour_weight": 1.0, **base}, 2, "sku"))
    assert co_occurring["a"] == ["X", "Y"]
    # With no weight on neighbours, co-occurrence is history.
    assert _top(recommend(strengths, {"method": "co_occurrence", "neighbour_weight": 0.0, **base}, 2, "sku")) \
        == history


def test_co_occurrence_lends_through_a_versions_own_neighbours_when_given_them(spark):
    rows = [(f"xy{i}", sku, 1.0) for i in range(6) for sku in ("X", "Y")]
    rows += [(f"z{i}", "Z", 1.0) for i in range(10)] + [("a", "X", 1.0)]
    strengths = _strengths(spark, rows)
    parameters = {"method": "co_occurrence", "prior_strength": 1.0, "neighbour_weight": 1.0,
                  "neighbours": 10, "max_history": 10}
    kept = neighbours_of(strengths, "sku", parameters)
    assert sorted(map(tuple, kept[["item", "neighbour"]].values)) == [("X", "Y"), ("Y", "X")]
    assert kept["similarity"].tolist() == pytest.approx([6 / math.sqrt(7 * 6)] * 2)
    counted = _top(recommend(strengths, parameters, 2, "sku"))
    assert _top(recommend(strengths, parameters, 2, "sku", similarities=kept)) == counted
    # Neighbours a version kept from other nights are the ones lent through, not tonight's.
    elsewhere = pd.DataFrame({"item": ["X"], "neighbour": ["W"], "similarity": [1.0]})
    assert counted["a"] == ["X", "Y"]
    assert _top(recommend(strengths, parameters, 2, "sku", similarities=elsewhere))["a"] == ["X", "Z"]
    # A kept neighbour no one has touched tonight ("XX", between X and Y by name) lends
    # nothing, and to no other product in its place.
    gone = pd.DataFrame({"item": ["X", "XX"], "neighbour": ["XX", "Z"], "similarity": [1.0, 1.0]})
    assert _top(recommend(strengths, parameters, 2, "sku", similarities=gone))["a"] == ["X", "Z"]


def test_als_recommends_the_product_that_completes_a_persons_taste(spark):
    # Two tastes: {A, B, C} and {D, E, F}, each shared by eight people; a has touched A and B.
    rows = [(f"g{i}", sku, 3.0) for i in range(8) for sku in "ABC"]
    rows += [(f"h{i}", sku, 3.0) for i in range(8) for sku in "DEF"] + [("a", "A", 3.0), ("a", "B", 3.0)]
    parameters = {"method": "als", "rank": 2, "reg_param": 0.01, "alpha": 10, "seed": 1}
    top = _top(recommend(_strengths(spark, rows), parameters, 3, "sku"))
    assert set(top["a"]) == {"A", "B", "C"}
    assert set(top["h0"]) == {"D", "E", "F"}


def test_products_bought_once_by_everyone_are_not_recommended_again(spark):
    events = spark.createDataFrame([
        ("a", "o1", date(2026, 5, 1), 0.0, 0.0, 0.0, True, 0.0, ["Fridge", "Milk"], None),
        ("a", "o2", date(2026, 5, 8), 0.0, 0.0, 0.0, True, 0.0, ["Milk"], None),
        ("b", "o3", date(2026, 5, 9), 0.0, 0.0, 0.0, True, 0.0, ["Fridge"], None),
        ("b", "v1", date(2026, 5, 10), 1.0, 0.0, 0.0, False, 0.0, ["Fridge"], None),
    ], EVENTS)
    excluded = one_off_purchases(events, date(2026, 6, 1), 365)
    assert sorted(tuple(r) for r in excluded.collect()) == [("a", "Fridge"), ("b", "Fridge")]
    strengths = events.transform(interaction_strengths(date(2026, 6, 1), {"product_views": 1, "purchases": 5},
                                                       30.0, 365, dimension=PRODUCTS))
    top = _top(recommend(strengths, {"method": "history", "prior_strength": 1.0}, 2, "sku", excluded))
    assert top == {"a": ["Milk"], "b": ["Milk"]}


def test_a_removal_lowers_a_products_strength(spark):
    events = spark.createDataFrame([
        ("a", "e1", date(2026, 5, 31), 0.0, 1.0, 0.0, False, 0.0, ["X"], None),
        ("a", "e2", date(2026, 5, 31), 0.0, 0.0, 1.0, False, 0.0, ["X"], None),
        ("a", "e3", date(2026, 5, 31), 1.0, 0.0, 0.0, False, 0.0, ["Y"], None),
    ], EVENTS)
    weights = {"product_views": 1, "cart_adds": 3, "cart_removals": -3}
    rows = events.transform(interaction_strengths(date(2026, 6, 1), weights, 1000.0, 365,
                                                  dimension=PRODUCTS)).collect()
    assert [r["sku"] for r in rows] == ["Y"]
    with pytest.raises(ValueError, match="product_views"):
        interaction_strengths(date(2026, 6, 1), {"product_views": -1}, 10.0, 365, dimension=PRODUCTS)


def test_ranking_metrics_on_a_known_ranking(spark):
    top = spark.createDataFrame([("a", 1, "X"), ("a", 2, "Y"), ("b", 1, "Y"), ("b", 2, "Z"), ("c", 1, "X"),
                                 ("c", 2, "Z")], "person_id string, rank int, sku string")
    future = spark.createDataFrame([("a", "Y"), ("a", "W"), ("a", "V"), ("b", "Y")], "person_id string, sku string")
    got = ranking_metrics(top, future, 2, "sku", catalogue=5)
    # a: a hit at rank 2 of 3 wanted; b: a hit at rank 1 of 1 wanted; c had no interactions: not judged.
    assert got["people"] == 2.0
    assert got["precision_curve"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert got["recall_at_k"] == pytest.approx((1 / 3 + 1) / 2)
    ideal_a = 1 + 1 / math.log2(3)
    assert got["ndcg_at_k"] == pytest.approx(((1 / math.log2(3)) / ideal_a + 1.0) / 2)
    assert got["coverage"] == pytest.approx(3 / 5)   # X, Y, Z of five


def test_content_sections_come_from_the_chosen_field(spark):
    events = spark.createDataFrame([
        ("a", "p1", date(2026, 5, 30), 0.0, 0.0, 0.0, False, 1.0, [], "guides"),
        ("a", "p2", date(2026, 6, 2), 0.0, 0.0, 0.0, False, 1.0, [], "deals"),
        ("a", "v1", date(2026, 5, 30), 1.0, 0.0, 0.0, False, 0.0, ["X"], None),
    ], EVENTS)
    sections = content("site_section")
    strengths = events.transform(interaction_strengths(date(2026, 6, 1), {"page_views": 1}, 30.0, 365,
                                                       dimension=sections)).collect()
    assert [(r["person_id"], r["section"]) for r in strengths] == [("a", "guides")]
    future = events.transform(future_categories(date(2026, 6, 1), date(2026, 7, 1), {"page_views": 1}, sections))
    assert [tuple(r) for r in future.collect()] == [("a", "deals")]
    with pytest.raises(ValueError, match="site_section"):
        content("title")


def test_within_categories_an_untouched_product_of_the_persons_category_beats_a_popular_one_elsewhere(spark):
    # a looks only at Tents; the most popular product overall is a Bike.
    rows = [("a", "tent-1", 4.0)] + [(f"b{i}", "bike-1", 3.0) for i in range(6)] + \
        [(f"t{i}", "tent-2", 1.0) for i in range(4)]
    groups = spark.createDataFrame([("tent-1", "Tents"), ("tent-2", "Tents"), ("bike-1", "Bikes")],
                                   "sku string, category string")
    parameters = {"method": "history", "prior_strength": 2.0}
    overall = _top(recommend(_strengths(spark, rows), parameters, 2, "sku"))
    assert overall["a"] == ["tent-1", "bike-1"]
    within = recommend(_strengths(spark, rows), parameters, 2, "sku", groups=groups)
    assert _top(within)["a"] == ["tent-1", "tent-2"]
    # Scores are shares: a person's scores over the whole catalogue would sum to 1; here
    # tent-1 = (4 + 2 * A(a, Tents) * w(tent-1)) / (4 + 2), A = (4 + 2 * pop(Tents)) / 6.
    total = 4 + 18 + 4
    lean = (4 + 2 * (8 / total)) / 6
    scores = {r["sku"]: r["score"] for r in within.where("person_id = 'a'").collect()}
    assert scores["tent-1"] == pytest.approx((4 + 2 * lean * (4 / 8)) / 6)
    assert scores["tent-2"] == pytest.approx(2 * lean * (4 / 8) / 6)


def _scores_by_formula(rows, category_of, prior, lent=None):
    """Every product's grouped score for every person, computed directly from the formula
    (grouped_scores' docstring); `lent`: {(person, sku): strength borrowed from neighbours}."""
    own = {(p, i): s for p, i, s in rows}
    people, skus = sorted({p for p, _, _ in rows}), sorted(category_of)
    total = sum(own.values())
    popularity = {i: sum(s for (_, j), s in own.items() if j == i) / total for i in skus}
    group_popularity = {}
    for i in skus:
        group_popularity[category_of[i]] = group_popularity.get(category_of[i], 0.0) + popularity[i]
    scores = {}
    for p in people:
        mine = sum(s for (q, _), s in own.items() if q == p)
        for i in skus:
            g = category_of[i]
            in_group = sum(s for (q, j), s in own.items() if q == p and category_of[j] == g)
            lean = (in_group + prior * group_popularity[g]) / (mine + prior)
            strength = own.get((p, i), 0.0) + (lent or {}).get((p, i), 0.0)
            scores[p, i] = (strength + prior * lean * popularity[i] / group_popularity[g]) / (mine + prior)
    return scores


def _assert_formula_ranks(top, expected, people, k, excluded=None):
    """Each person's rows in `top` are their `k` best by the formula's `expected` scores,
    ranked 1..k, leaving out what `excluded` ({person: items}) names for them."""
    for p in people:
        best = sorted((sku for (q, sku) in expected if q == p and sku not in (excluded or {}).get(p, ())),
                      key=lambda sku: (-expected[p, sku], sku))[:k]
        got = sorted((r for r in top if r["person_id"] == p), key=lambda r: r["rank"])
        assert [r["rank"] for r in got] == list(range(1, k + 1)), p
        assert [r["sku"] for r in got] == best, p
        assert [r["score"] for r in got] == pytest.approx([expected[p, sku] for sku in best]), p


@pytest.mark.parametrize("method", ["history", "co_occurrence"])
def test_grouped_rankings_are_the_formulas_best_items_for_everyone(spark, method):
    # Three categories (all among the most popular, so every product is a candidate).
    category_of = {f"{g}{n}": g for g in "ABC" for n in range(4)}
    rows = [("p1", "A0", 3.0), ("p1", "A1", 1.0), ("p1", "B2", 0.5), ("p2", "B0", 2.0), ("p2", "C3", 4.0),
            ("p3", "A0", 1.0), ("p3", "A2", 2.0), ("p3", "C1", 1.5), ("p4", "C0", 5.0), ("p4", "B1", 0.25),
            ("p5", "A3", 1.0), ("p5", "B0", 1.0), ("p5", "C0", 1.0), ("p6", "B3", 2.0), ("p6", "A1", 0.5),
            ("p6", "C2", 1.0)]
    groups = spark.createDataFrame(sorted(category_of.items()), "sku string, category string")
    parameters = {"method": method, "prior_strength": 2.0, "neighbour_weight": 0.5, "neighbours": 20,
                  "max_history": 20}
    lent = None
    if method == "co_occurrence":
        # Cosine over people of who touched what: lent(p, j) = w * sum_i s(p, i) * sim(i, j).
        touched = {}
        for p, i, _ in rows:
            touched.setdefault(i, set()).add(p)
        lent = {}
        for p, i, s in rows:
            for j in touched:
                both = len(touched[i] & touched[j])
                if j != i and both:
                    lent[p, j] = lent.get((p, j), 0.0) + 0.5 * s * both / math.sqrt(len(touched[i]) * len(touched[j]))
    expected = _scores_by_formula(rows, category_of, 2.0, lent)
    top = recommend(_strengths(spark, rows), parameters, 4, "sku", groups=groups).collect()
    _assert_formula_ranks(top, expected, sorted({r[0] for r in rows}), 4)


def test_a_persons_exclusions_leave_their_next_best_items_in_final_ranks(spark):
    category_of = {f"{g}{n}": g for g in "ABC" for n in range(4)}
    rows = [("p1", "A0", 3.0), ("p1", "A1", 1.0), ("p1", "B2", 0.5), ("p2", "B0", 2.0), ("p2", "C3", 4.0),
            ("p3", "A0", 1.0), ("p3", "A2", 2.0), ("p3", "C1", 1.5)]
    groups = spark.createDataFrame(sorted(category_of.items()), "sku string, category string")
    # p1 loses their two best, p2 one best and a product no one touched tonight; p3 nothing.
    excluded = {"p1": {"A0", "A1"}, "p2": {"C3", "gone"}}
    exclusions = spark.createDataFrame([(p, sku) for p, skus in sorted(excluded.items()) for sku in sorted(skus)],
                                       "person_id string, sku string")
    expected = _scores_by_formula(rows, category_of, 2.0)
    top = recommend(_strengths(spark, rows), {"method": "history", "prior_strength": 2.0}, 4, "sku",
                    exclusions, groups).collect()
    _assert_formula_ranks(top, expected, ["p1", "p2", "p3"], 4, excluded)


def test_a_persons_grouped_ranking_is_the_same_bits_in_any_batch_and_item_order():
    # Scores are sums of floats: they must not depend on the batch a person lands in or on
    # the order their items arrive in, or a rerun could publish other ranks.
    rng = np.random.default_rng(3)
    names = [f"sku{i:03d}" for i in range(40)]
    groups = rng.integers(0, 5, len(names))
    share = rng.random(len(names))
    group_total = np.bincount(groups, weights=share)
    items = pd.DataFrame({"item": names, "group": [f"g{g}" for g in groups],
                          "within": share / group_total[groups], "group_popularity": group_total[groups] / share.sum()})
    similar = pd.DataFrame([(a, b, rng.random()) for a in names for b in rng.choice(names, 6, replace=False) if a != b],
                           columns=["item", "neighbour", "similarity"])
    catalogue = grouped_ranking.catalogue(items, 5, 2, similar, 0.7)
    chosen_lists = [list(rng.choice(names, rng.integers(1, 9), replace=False)) for _ in range(60)]
    people = [(chosen, list(rng.random(len(chosen)) * 3)) for chosen in chosen_lists]

    def ranked(batch):
        person, item, score = grouped_ranking.rank(catalogue, 2.0, 5, [np.array(i) for i, _ in batch],
                                                   [np.array(s) for _, s in batch])
        return {(id(batch[p][0]), catalogue.items[i]): s for p, i, s in zip(person, item, score, strict=True)}

    whole = ranked(people)
    alone = {}
    for chosen, strengths in people:
        alone.update(ranked([(chosen, strengths)]))
    shuffled = {}
    for chosen, strengths in people:
        order = rng.permutation(len(chosen))
        result = ranked([([chosen[o] for o in order], [strengths[o] for o in order])])
        shuffled.update({(id(chosen), item): score for (_, item), score in result.items()})
    assert whole == alone == shuffled
    assert len(whole) == 5 * len(people)


def test_products_take_the_category_their_single_product_events_name_most(spark):
    events = spark.createDataFrame([
        ("a", "e1", date(2026, 5, 1), 1.0, 0.0, 0.0, False, 0.0, ["X"], None, ["Tents"]),
        ("b", "e2", date(2026, 5, 2), 1.0, 0.0, 0.0, False, 0.0, ["X"], None, ["Tents"]),
        ("c", "e3", date(2026, 5, 3), 1.0, 0.0, 0.0, False, 0.0, ["X"], None, ["Sale"]),
        ("c", "e4", date(2026, 5, 3), 0.0, 0.0, 0.0, True, 0.0, ["X", "Y"], None, ["Bikes"]),   # two products
        ("d", "e5", date(2026, 6, 5), 1.0, 0.0, 0.0, False, 0.0, ["Y"], None, ["Bikes"]),        # after as_of
    ], EVENTS + ", categories array<string>")
    assert [tuple(r) for r in product_categories(events, date(2026, 6, 1)).collect()] == [("X", "Tents")]



def test_scoring_reads_one_window_of_events_and_ranks_as_from_all_of_them(spark):
    events = spark.createDataFrame([
        ("a", "e1", date(2025, 1, 5), 1.0, 0.0, 0.0, False, 0.0, ["Z"], None, ["Bikes"]),   # before the lookback
        ("a", "e2", date(2026, 5, 1), 1.0, 0.0, 0.0, False, 0.0, ["X"], None, ["Tents"]),
        ("a", "o1", date(2026, 5, 2), 0.0, 0.0, 0.0, True, 0.0, ["X"], None, ["Tents"]),
        ("b", "e3", date(2026, 5, 3), 1.0, 0.0, 0.0, False, 0.0, ["Y"], None, ["Tents"]),
        ("b", "e4", date(2026, 6, 2), 1.0, 0.0, 0.0, False, 0.0, ["Z"], None, ["Bikes"]),   # after as_of
    ], EVENTS + ", categories array<string>")
    parameters = {"item": "sku", "method": "history", "prior_strength": 1.0, "half_life_days": 30.0,
                  "interaction_weights": {"product_views": 1.0, "purchases": 5.0}, "lookback_days": 365,
                  "consumable": False, "within_categories": True}
    as_of = date(2026, 6, 1)
    window = events_window(events, parameters, as_of)
    assert sorted(r["event_id"] for r in window.collect()) == ["e2", "e3", "o1"]
    assert "site_section" not in window.columns and "page_views" not in window.columns

    def top(frame):
        strengths = strengths_as_of(frame, parameters, as_of, PRODUCTS)
        return _top(recommend(strengths, parameters, 2, "sku", exclusions_as_of(frame, parameters, as_of),
                              groups_as_of(frame, parameters, as_of)))
    # a bought X and no one bought it again: a is not shown it; b is, above the one product
    # b looked at once, since X is much the most popular in their category.
    assert top(window) == top(events) == {"a": ["Y"], "b": ["X", "Y"]}


def test_half_life_is_one_number_or_a_list_to_choose_from():
    assert half_life_choices({"half_life_days": 60}, "affinity") == [60.0]
    assert half_life_choices({"half_life_days": [30, 365]}, "content_affinity") == [30.0, 365.0]
    for bad in ([], [30, 0], "long", [-1]):
        with pytest.raises(BadInputError, match=r"models\.content_affinity\.half_life_days must be a number > 0"):
            half_life_choices({"half_life_days": bad}, "content_affinity")
