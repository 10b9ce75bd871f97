import gzip
import hashlib
import json
from datetime import date

import pytest

from pipelines.generate.synthetic import GenerateOptions, generate

RUN = date(2026, 6, 1)


def _run(root, **kw):
    opts = GenerateOptions(run_date=RUN, **{"profiles": 60, "days": 90, "seed": 3, "files": 2, **kw})
    return generate(str(root / "events"), str(root / "profiles"), str(root / "truth"), opts)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_the_same_bytes_whatever_the_number_of_workers(tmp_path):
    _run(tmp_path / "a")
    opts = GenerateOptions(run_date=RUN, profiles=60, days=90, seed=3, files=2)
    root = tmp_path / "b"
    generate(str(root / "events"), str(root / "profiles"), str(root / "truth"), opts, workers=1)
    for kind in ("events", "profiles", "truth"):
        assert _digest(tmp_path / "a" / kind) == _digest(tmp_path / "b" / kind)


def test_events_are_xdm_shaped_inside_the_history_and_counted(tmp_path):
    result = _run(tmp_path, duplicate_rate=0.05, bad_record_rate=0.0)
    lines = [line for f in sorted((tmp_path / "events").iterdir())
             for line in gzip.open(f, "rt").read().splitlines()]
    events = [json.loads(line) for line in lines]
    assert len(events) == result.events + result.duplicates
    assert len({e["_id"] for e in events}) == result.events
    assert all("2026-03-03" <= e["timestamp"][:10] < "2026-06-01" for e in events)
    assert all(e["timestamp"].endswith("Z") for e in events)
    for event in events:
        primaries = [i for items in event["identityMap"].values() for i in items if i["primary"]]
        assert len(primaries) == 1 and "ECID" in event["identityMap"]
    purchases = [e for e in events if e["eventType"] == "commerce.purchases"]
    assert purchases and all(e["commerce"]["order"]["priceTotal"] > 0 for e in purchases)
    assert all(e["productListItems"][0]["productCategories"] for e in purchases)


def test_ground_truth_has_one_row_per_person_with_an_oracle_probability(tmp_path):
    _run(tmp_path)
    truth = [json.loads(line) for f in sorted((tmp_path / "truth").iterdir()) for line in gzip.open(f, "rt")]
    assert len(truth) == 60
    assert all(0.0 <= t["oracle_purchase_probability"] <= 1.0 for t in truth)


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="profiles"):
        GenerateOptions(run_date=RUN, profiles=0)
    with pytest.raises(ValueError, match="products must be at least 12"):
        GenerateOptions(run_date=RUN, products=5)


def test_a_larger_catalogue_sells_every_category_and_the_truth_names_its_products(tmp_path):
    _run(tmp_path, products=1200, profiles=200, bad_record_rate=0.0)
    skus = {item["SKU"] for f in sorted((tmp_path / "events").iterdir()) for line in gzip.open(f, "rt")
            for item in json.loads(line).get("productListItems", [])}
    per_category = {}
    for name in skus:
        code, number = name.split("-")
        per_category.setdefault(code, set()).add(int(number))
    assert len(per_category) == 12 and max(max(n) for n in per_category.values()) < 100
    assert max(max(n) for n in per_category.values()) >= 25   # past the default catalogue's 25
    truth = [json.loads(line) for f in sorted((tmp_path / "truth").iterdir()) for line in gzip.open(f, "rt")]
    for person in truth:
        chances = list(person["product_preferences"].values())
        assert len(chances) == 30 and chances == sorted(chances, reverse=True)
        assert set(person["product_preferences"]) <= {f"{c}-{i:03d}" for c in per_category for i in range(100)}
