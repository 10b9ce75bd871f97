"""The same rows in another file layout give the same numbers: what a resumed night needs to
publish what a clean night would."""

import random
from datetime import date, timedelta

import pyspark.sql.functions as F
import pytest

from pipelines.models.affinity import interaction_strengths, top_affinities
from pipelines.core.reproducible import exact_sum, in_canonical_order, money_sum

# Summed left to right these keep the 1.0; right to left they lose it.
CANCELLING = [1e16, -1e16, 1.0]


def _in_order(spark, values, schema="v double"):
    """A one-partition frame whose rows arrive in exactly this order."""
    return spark.createDataFrame(spark.sparkContext.parallelize([(v,) for v in values], 1), schema)


def test_plain_sums_follow_the_order_of_their_terms_and_exact_sums_do_not(spark):
    forward, backward = _in_order(spark, CANCELLING), _in_order(spark, CANCELLING[::-1])
    plain = [frame.agg(F.sum("v")).first()[0] for frame in (forward, backward)]
    exact = [frame.agg(exact_sum("v")).first()[0] for frame in (forward, backward)]
    assert plain == [1.0, 0.0]
    assert exact == [1.0, 1.0]


def test_money_adds_up_to_the_cent_in_any_order(spark):
    dimes = _in_order(spark, [0.1] * 30)
    assert dimes.agg(F.sum("v")).first()[0] != 3.0   # 3.0000000000000013
    assert dimes.agg(money_sum("v")).first()[0] == 3.0
    payments = [0.1] * 30 + [-0.3, 0.1, 0.2] + [1e6 + 0.01, -1e6, 19.99]
    totals = [frame.agg(money_sum("v")).first()[0] for frame in (_in_order(spark, payments),
                                                                 _in_order(spark, payments[::-1]))]
    assert totals[0] == totals[1] == pytest.approx(23.0, abs=1e-12)
    assert [frame.agg(money_sum("v")).first()[0] for frame in _layouts(spark, [(v,) for v in CANCELLING], "v double")] \
        == [1.0, 1.0]
    assert _in_order(spark, [None, None]).agg(money_sum("v")).first()[0] is None
    # Billionths round to the nearest, carrying into the units.
    assert _in_order(spark, [2.9999999999, 0.0000000004]).agg(money_sum("v")).first()[0] == 3.0


def _layouts(spark, rows, schema):
    """The same rows as one partition in their order and as five in reverse order."""
    one = spark.createDataFrame(spark.sparkContext.parallelize(rows, 1), schema)
    five = spark.createDataFrame(spark.sparkContext.parallelize(rows[::-1], 5), schema)
    return one, five


def test_canonical_order_puts_the_same_rows_in_the_same_partitions_in_the_same_order(spark):
    rows = [(f"p{i % 37}", date(2026, 1, 1) + timedelta(days=i // 37)) for i in range(300)]
    one, five = _layouts(spark, rows, "person_id string, as_of_date date")
    partitions = [in_canonical_order(frame, "person_id", "as_of_date").rdd.glom()
                  .map(lambda part: [tuple(r) for r in part]).collect() for frame in (one, five)]
    assert partitions[0] == partitions[1]
    assert len(partitions[0]) == int(spark.conf.get("spark.sql.shuffle.partitions"))
    assert sum(len(p) for p in partitions[0]) == len(rows)


def test_affinities_do_not_depend_on_the_layout(spark):
    rng = random.Random(3)
    categories = ["Outdoor", "Kids", "Home", "Travel", "Swimwear"]
    rows = [(f"p{rng.randrange(60)}", date(2026, 5, 31) - timedelta(days=rng.randrange(200)),
             float(rng.randrange(3)), float(rng.randrange(2)), rng.random() < 0.2, rng.sample(categories, 2))
            for _ in range(2000)]
    schema = ("person_id string, event_date date, product_views double, cart_adds double, is_purchase boolean, "
              "categories array<string>")
    strengths = interaction_strengths(date(2026, 6, 1), {"product_views": 1, "cart_adds": 3, "purchases": 5},
                                      30.0, 365)
    outputs = []
    for events in _layouts(spark, rows, schema):
        per_person = events.transform(strengths)
        outputs.append(sorted(map(tuple, top_affinities(per_person, 2.0, 3).collect())))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 60 * 3


def _custom_definition(kind: str, label: str, extra: dict | None = None):
    from pipelines.models import custom
    from pipelines.features.build import feature_columns

    model = {"kind": kind, "registered_name": "m", "profile_prefix": "m", "horizon_days": 30, "label": label,
             "extra_features": extra or {}, "estimator": "gbt", "params": {}, "training_snapshots": 2,
             "cadence_days": 30, "seed": 1}
    definition, problems = custom.parse("m", model, feature_columns([7, 30, 90, 365]))
    assert not problems, problems
    return definition


def _money_events(spark, as_of):
    """One person's purchases whose plain double sum depends on the order of its terms: every
    event in the 30 days after `as_of` (for the label) and in the 30 days before (for a feature)."""
    amounts = CANCELLING + [0.1] * 7
    rows = [(f"e{side}{i:02d}", "p1", as_of + timedelta(days=(i % 20) if side == "a" else -1 - i % 20), amount)
            for side in "ab" for i, amount in enumerate(amounts)]
    return _layouts(spark, rows, "event_id string, person_id string, event_date date, revenue double")


def test_a_custom_label_that_sums_money_does_not_depend_on_the_layout(spark):
    as_of = date(2026, 3, 1)
    definition = _custom_definition("regressor", "sum(revenue)")
    person = spark.createDataFrame([("p1", as_of)], "person_id string, as_of_date date")
    labels = [person.transform(definition.labels(events, as_of, 30)).first()["label"]
              for events in _money_events(spark, as_of)]
    assert labels[0] == labels[1]


def test_a_custom_extra_feature_that_sums_money_does_not_depend_on_the_layout(spark):
    from pipelines.models import custom

    as_of = date(2026, 3, 1)
    definition = _custom_definition("classifier", "count(1) > 0", {"spend_30d": "sum(revenue)"})
    values = [custom.extra_feature_values([definition], events, as_of, 365).first()["m:spend_30d"]
              for events in _money_events(spark, as_of)]
    assert values[0] == values[1]


def test_a_logistic_fit_does_not_depend_on_the_layout(spark):
    from pipelines.models.propensity import fit_logistic

    rng = random.Random(4)
    rows = [(f"p{k:04d}", rng.gauss(0, 1), rng.expovariate(0.1), float(rng.random() < 0.3)) for k in range(3000)]
    frame = spark.createDataFrame(rows, "person_id string, a double, b double, label double")
    fits = []
    for partitions in (1, 5, 13):
        shuffled = in_canonical_order(frame.repartition(partitions, "a"), "person_id")
        model = fit_logistic(["a", "b"], shuffled).stages[-1]
        fits.append((model.intercept, tuple(model.coefficients.toArray())))
    assert fits[0] == fits[1] == fits[2]
