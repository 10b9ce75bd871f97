"""Affinity's ranking in numpy, a batch of people at a time: products' grouped ranking
(item_affinity.grouped_scores), and the ungrouped one of categories and content sections
(affinity.shrunk_scores: the whole catalogue as one group).

Each person arrives as one row (their items and own strengths). What the formula needs of
the catalogue (each item's group and share of it, the groups' popularity and leading items,
and co-occurrence's item-to-item kernel) is the catalogue's size and travels whole to every
task. In a batch, co-occurrence's lending is one sparse product, people x items by items x
items, and every candidate is scored and ranked in flat arrays: Spark would evaluate a
lambda per candidate, or aggregate a row per borrowed strength.

Sums run in a fixed order (a person's items sorted, the kernel's rows sorted), so a
person's scores do not depend on which batch, partition or file order they came in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

# People ranked at once inside a batch: bounds the arrays of one step (people x candidates).
PEOPLE_PER_STEP = 2_000


@dataclass(frozen=True)
class Catalogue:
    """The items in name order (an item's index is its rank by name, the ties' order), and
    what the ranking reads of each: its group, its share of the group; per group its
    popularity and its leading items (best share first); the most popular groups; and the
    lending kernel, identity plus neighbour_weight x similarity (None: no lending)."""
    items: np.ndarray
    group_of: np.ndarray
    within: np.ndarray
    group_popularity: np.ndarray
    leading_start: np.ndarray
    leading_items: np.ndarray
    popular_groups: np.ndarray
    kernel: sparse.csr_matrix | None

    @property
    def groups(self) -> int:
        return len(self.group_popularity)


def catalogue(items: pd.DataFrame, n: int, popular_groups: int,
              similarities: pd.DataFrame | None = None, neighbour_weight: float = 0.0) -> Catalogue:
    """`items`: a row per item (`item`, `group`, `within`: its share of the group,
    `group_popularity`); `similarities`: (`item`, `neighbour`, `similarity`) rows. Each
    group leads with its `n` items of highest share (ties by name)."""
    items = items.sort_values("item", kind="stable").reset_index(drop=True)
    names = items["item"].to_numpy(dtype=str)
    group_names, group_of = np.unique(items["group"].to_numpy(dtype=str), return_inverse=True)
    group_popularity = np.zeros(len(group_names))
    group_popularity[group_of] = items["group_popularity"].to_numpy(dtype=float)
    within = items["within"].to_numpy(dtype=float)
    # Leading items: by group, then highest share, then name (the index).
    order = np.lexsort((np.arange(len(names)), -within, group_of))
    position = np.arange(len(order)) - np.searchsorted(group_of[order], group_of[order])
    kept = order[position < n]
    counts = np.bincount(group_of[kept], minlength=len(group_names))
    # Most popular groups first, ties by name (the groups are in name order).
    popular = np.lexsort((np.arange(len(group_names)), -group_popularity))[:popular_groups]
    kernel = None
    if similarities is not None:
        rows, item_found = _positions(names, similarities["item"].to_numpy(dtype=str))
        cols, neighbour_found = _positions(names, similarities["neighbour"].to_numpy(dtype=str))
        # A version's kept neighbours are of its run date: an item no one has touched since
        # is not in tonight's catalogue, and lends and borrows nothing.
        found = item_found & neighbour_found
        lent = neighbour_weight * similarities["similarity"].to_numpy(dtype=float)[found]
        size = len(names)
        kernel = (sparse.identity(size, format="csr")
                  + sparse.csr_matrix((lent, (rows[found], cols[found])), shape=(size, size))).tocsr()
        kernel.sort_indices()
    return Catalogue(items=names, group_of=group_of, within=within, group_popularity=group_popularity,
                     leading_start=np.concatenate([[0], np.cumsum(counts)]), leading_items=kept,
                     popular_groups=popular, kernel=kernel)


def _positions(names: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's index in the sorted `names`, and whether it is there at all."""
    at = np.searchsorted(names, values)
    found = at < len(names)
    found[found] = names[at[found]] == values[found]
    return at, found


def _spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices starts[0] .. starts[0]+lengths[0]-1, starts[1] .., concatenated."""
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(lengths.sum()) - offsets + np.repeat(starts, lengths)


def rank(cat: Catalogue, prior: float, n: int, items: list[np.ndarray],
         strengths: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """People's own items and strengths (one non-empty array each per person) -> (person,
    item, score) of each person's `n` best items, best first, as indices into the inputs
    and the catalogue. The score is grouped_scores' formula."""
    people = len(items)
    counts = np.fromiter((len(i) for i in items), dtype=np.int64, count=people)
    cols = np.searchsorted(cat.items, np.concatenate(items).astype(str))
    own = sparse.csr_matrix((np.concatenate(strengths).astype(float), (np.repeat(np.arange(people), counts), cols)),
                            shape=(people, len(cat.items)))
    own.sum_duplicates()
    denominator = np.asarray(own.sum(axis=1)).ravel() + prior
    lent = (own @ cat.kernel) if cat.kernel is not None else own
    lent.sort_indices()
    lent = lent.tocoo()   # in order: by person, then item
    b_person, b_item, b_strength = lent.row.astype(np.int64), lent.col.astype(np.int64), lent.data
    # The (person, group) pairs a candidate needs: the groups of their items and the most popular.
    g = cat.groups
    popular = (np.repeat(np.arange(people), len(cat.popular_groups)) * g
               + np.tile(cat.popular_groups, people))
    keys = np.unique(np.concatenate([b_person * g + cat.group_of[b_item], popular]))
    pair_person, pair_group = keys // g, keys % g
    in_group = np.zeros(len(keys))
    own_coo = own.tocoo()
    np.add.at(in_group, np.searchsorted(keys, own_coo.row * g + cat.group_of[own_coo.col]), own_coo.data)
    leaning = (in_group + prior * cat.group_popularity[pair_group]) / denominator[pair_person]
    # The person's (borrowed) strengths, and their groups' leading items as untouched.
    b_leaning = leaning[np.searchsorted(keys, b_person * g + cat.group_of[b_item])]
    b_score = (b_strength + prior * b_leaning * cat.within[b_item]) / denominator[b_person]
    lengths = cat.leading_start[pair_group + 1] - cat.leading_start[pair_group]
    l_item = cat.leading_items[_spans(cat.leading_start[pair_group], lengths)]
    l_person = np.repeat(pair_person, lengths)
    l_score = prior * np.repeat(leaning, lengths) * cat.within[l_item] / denominator[l_person]
    # An item both touched (or lent to) and leading keeps its own, higher score: the leading
    # copy is dropped. The borrowed keys are in order (person, then item), so a search finds it.
    size = len(cat.items)
    b_keys = b_person * size + b_item
    l_keys = l_person * size + l_item
    if len(b_keys):
        untouched = b_keys[np.minimum(np.searchsorted(b_keys, l_keys), len(b_keys) - 1)] != l_keys
    else:
        untouched = np.ones(len(l_keys), bool)
    person = np.concatenate([b_person, l_person[untouched]])
    item = np.concatenate([b_item, l_item[untouched]])
    score = np.concatenate([b_score, l_score[untouched]])
    order = np.lexsort((item, -score, person))
    person, item, score = person[order], item[order], score[order]
    place = np.arange(len(person)) - np.searchsorted(person, person)
    best = place < n
    return person[best], item[best], score[best]


def rank_batches(cat: Catalogue, prior: float, n: int, item: str):
    """A mapInPandas function: batches of (person_id, _items, _strengths) -> rows of
    (person_id, <item>, score), each person's `n` best."""
    def _apply(batches):
        for batch in batches:
            for start in range(0, len(batch), PEOPLE_PER_STEP):
                part = batch.iloc[start:start + PEOPLE_PER_STEP]
                person, chosen, score = rank(cat, prior, n, list(part["_items"]), list(part["_strengths"]))
                yield pd.DataFrame({"person_id": part["person_id"].to_numpy()[person],
                                    item: cat.items[chosen], "score": score})
    return _apply
