"""Sample XDM data from a latent per-person behaviour model.

Every person has hidden traits: when they arrive, how long they stay active (drop-out),
how often they visit, how often they buy, how much they spend, which categories they
prefer. Events are drawn from those traits, so what the models should learn is known.
The traits are written beside the data (`landing/ground_truth/`) for evaluation only;
the pipeline never reads them.

Output, all gzip JSON lines in the form Adobe Experience Platform exports:
  <events_dir>/part-NNNNN.json.gz        ExperienceEvents
  <profiles_dir>/part-NNNNN.json.gz      Individual Profiles of registered people
  <truth_dir>/part-NNNNN.json.gz         latent traits and the oracle purchase probability

Same seed, same bytes: randomness comes from one numpy Generator per person derived
from the seed, and gzip headers carry no timestamp.
"""

from __future__ import annotations

import functools
import gzip
import io
import multiprocessing
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterator

import numpy as np

CATEGORIES = [
    ("C01", "Outdoor"), ("C02", "Running"), ("C03", "Camping"), ("C04", "Cycling"),
    ("C05", "Swimwear"), ("C06", "Footwear"), ("C07", "Accessories"), ("C08", "Electronics"),
    ("C09", "Home"), ("C10", "Kids"), ("C11", "Fitness"), ("C12", "Travel"),
]
# The catalogue's default size: 12 categories x 25 products (`--products` scales it).
PRODUCTS_PER_CATEGORY = 25
# Products have a style; people lean to some styles across categories, which is what lets
# a recommender learn from similar people. A product's weight within its category is its
# popularity times the person's taste for its style.
STYLES = 5
# Content: site sections, each with a few pages; people lean to some sections.
SECTIONS = ["home", "guides", "reviews", "deals", "new-arrivals", "stories", "help", "stores", "community",
            "events"]
PAGES_PER_SECTION = 4
FIRST_NAMES = ["Ana", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Julia",
               "Kofi", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara"]
LAST_NAMES = ["Ahmed", "Bauer", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen",
              "Ito", "Jensen", "Kim", "Lopez", "Moreau", "Novak", "Okafor", "Patel"]
CITIES = [("Berlin", "DE", "10115"), ("Lisbon", "PT", "1100-148"), ("Austin", "US", "78701"),
          ("Toronto", "CA", "M5H 2N2"), ("Lyon", "FR", "69001"), ("Osaka", "JP", "530-0001")]
CURRENCY = "USD"
SITE = "https://shop.example.com"


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate: `profiles` people over `days` days ending the day before `run_date`."""

    run_date: date
    profiles: int = 20000
    days: int = 365
    seed: int = 7
    files: int = 8
    duplicate_rate: float = 0.002
    bad_record_rate: float = 0.0005
    oracle_horizon_days: int = 30
    products: int = len(CATEGORIES) * PRODUCTS_PER_CATEGORY   # catalogue size, spread over the categories

    @property
    def products_per_category(self) -> int:
        return -(-self.products // len(CATEGORIES))

    def __post_init__(self) -> None:
        if self.products < len(CATEGORIES):
            raise ValueError(f"products must be at least {len(CATEGORIES)} (one per category), got {self.products}")
        for name in ("profiles", "days", "files"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("duplicate_rate", "bad_record_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class GenerateResult:
    people: int
    events: int
    profiles: int
    duplicates: int
    bad_records: int
    files: list[str]


@functools.lru_cache(maxsize=8192)
def _day_text(epoch_day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=epoch_day)).isoformat()


def _iso(epoch_ms: int) -> str:
    """ISO-8601 UTC text of a time in milliseconds since the epoch, as XDM writes it."""
    day, rest = divmod(epoch_ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{_day_text(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class _Ids:
    """UUID-shaped, unique ids: a random per-person prefix and a counter (fast, reproducible)."""

    def __init__(self, rng: np.random.Generator):
        self.prefix = rng.bytes(10).hex()
        self.count = 0

    def next(self) -> str:
        self.count += 1
        text = self.prefix + f"{self.count:012x}"
        return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-8{text[17:20]}-{text[20:]}"


def _identity(namespace: str, value: str, primary: bool, authenticated: bool) -> dict:
    return {namespace: [{"id": value, "primary": primary,
                         "authenticatedState": "authenticated" if authenticated else "ambiguous"}]}


@functools.lru_cache(maxsize=4)
def catalogue(per_category: int = PRODUCTS_PER_CATEGORY) -> tuple[np.ndarray, np.ndarray]:
    """Each product's popularity (Zipf-like within its category) and style (categories x
    products): fixed, not seeded, so every lakehouse of one catalogue size sells the same."""
    rank = np.arange(1, per_category + 1, dtype=float)
    popularity = np.tile(rank ** -0.8, (len(CATEGORIES), 1))
    styles = (np.arange(len(CATEGORIES))[:, None] * 3 + np.arange(per_category)[None, :]) % STYLES
    return popularity, styles


def sku(category: int, item: int) -> str:
    return f"{CATEGORIES[category][0]}-{item:03d}"


class _Person:
    """Latent traits of one person, drawn from the person's own generator."""

    def __init__(self, index: int, opts: GenerateOptions, rng: np.random.Generator):
        self.index = index
        self.rng = rng
        days = opts.days
        self.registered = bool(rng.random() < 0.7)
        self.crm_id = f"CRM{index:08d}" if self.registered else None
        self.email = f"user{index:08d}@example.com"
        self.ecids = [str(int.from_bytes(rng.bytes(16), "big"))[:38].zfill(38)
                      for _ in range(1 + int(rng.random() < 0.2))]
        # Arrival: 40% were already customers when the history starts.
        self.start = 0.0 if rng.random() < 0.4 else float(rng.uniform(0, days))
        mean_life = float(rng.lognormal(math.log(180), 0.9))
        self.end_alive = self.start + float(rng.exponential(mean_life))
        self.purchase_rate = float(rng.gamma(0.5, 1 / 25))          # purchases per day while active
        self.visit_rate = 0.004 + 0.8 * self.purchase_rate + float(rng.gamma(1.0, 1 / 130))
        self.spend_level = float(rng.gamma(4.0, 15.0))               # mean order value
        self.category_prefs = rng.dirichlet(np.full(len(CATEGORIES), 0.3))
        self.category_cdf = np.cumsum(self.category_prefs)
        self.style_prefs = rng.dirichlet(np.full(STYLES, 0.4))
        popularity, styles = catalogue(opts.products_per_category)
        weights = popularity * self.style_prefs[styles]
        self.product_cdfs = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
        self.content_prefs = rng.dirichlet(np.full(len(SECTIONS), 0.3))
        self.content_cdf = np.cumsum(self.content_prefs)
        self.ids = _Ids(rng)
        self.login_rate = float(rng.beta(4, 2)) if self.registered else 0.0

    def product_preferences(self) -> np.ndarray:
        """The chance that a product this person looks at is each SKU (categories x items)."""
        within = np.diff(self.product_cdfs, axis=1, prepend=0.0)
        return self.category_prefs[:, None] * within

    def active_until(self, days: int) -> float:
        return min(self.end_alive, float(days))

    def oracle_purchase_probability(self, days: int, horizon: int) -> float:
        """P(at least one purchase in the `horizon` days after the history ends)."""
        active_days = max(0.0, min(self.end_alive, days + horizon) - max(self.start, days))
        return 1.0 - math.exp(-self.purchase_rate * active_days)


# Items in a purchase: the viewed products, Poisson(VIEWS_PER_SESSION) + 1, all carted, each
# QUANTITY_CHOICES; unit price Gamma(6, spend_level / 12) + 1.
VIEWS_PER_SESSION = 1.2
QUANTITY_CHOICES = (1, 2)


def expected_order_value(spend_level: float) -> float:
    """Mean value of one purchase of a person with this spend level (as `session` draws it)."""
    items = VIEWS_PER_SESSION + 1.0
    quantity = sum(QUANTITY_CHOICES) / len(QUANTITY_CHOICES)
    return items * quantity * (6.0 * spend_level / 12.0 + 1.0)


class _EventWriter:
    """Builds XDM event dicts for one person's sessions."""

    def __init__(self, person: _Person, history_start_ms: int):
        self.p = person
        self.rng = person.rng
        self.history_start_ms = history_start_ms

    def _identity_map(self, ecid: str, logged_in: bool, guest_email: bool) -> dict:
        if logged_in:
            return {**_identity("ECID", ecid, False, False), **_identity("CRMID", self.p.crm_id, True, True)}
        if guest_email:
            return {**_identity("ECID", ecid, False, False), **_identity("Email", self.p.email, True, True)}
        return _identity("ECID", ecid, True, False)

    def _product(self) -> dict:
        cat = min(int(np.searchsorted(self.p.category_cdf, self.rng.random())), len(CATEGORIES) - 1)
        code, name = CATEGORIES[cat]
        cdf = self.p.product_cdfs[cat]
        item = min(int(np.searchsorted(cdf, self.rng.random())), len(cdf) - 1)
        price = round(float(self.rng.gamma(6.0, self.p.spend_level / 12.0)) + 1.0, 2)
        return {"SKU": sku(cat, item), "name": f"{name} item {item}", "priceTotal": price,
                "currencyCode": CURRENCY, "productCategories": [{"categoryID": code, "categoryName": name}]}

    def session(self, day: float, buys: bool) -> Iterator[dict]:
        moment = self.history_start_ms + int(day * 86_400_000)
        ecid = self.p.ecids[int(self.rng.integers(len(self.p.ecids)))]
        logged_in = self.p.registered and (buys or self.rng.random() < self.p.login_rate)
        guest = buys and not self.p.registered
        ids = self._identity_map(ecid, logged_in, guest)

        def event(event_type: str, body: dict) -> dict:
            nonlocal moment
            moment += int(self.rng.integers(5_000, 240_000))
            return {"_id": self.p.ids.next(), "timestamp": _iso(moment), "eventType": event_type,
                    "identityMap": ids, **body}

        for _ in range(1 + int(self.rng.poisson(0.5))):
            section = SECTIONS[min(int(np.searchsorted(self.p.content_cdf, self.rng.random())), len(SECTIONS) - 1)]
            page = f"{section} {int(self.rng.integers(PAGES_PER_SECTION)) + 1}"
            yield event("web.webpagedetails.pageViews", {"web": {"webPageDetails": {
                "name": page, "siteSection": section, "URL": f"{SITE}/{section}/{page.split()[-1]}",
                "pageViews": {"value": 1}}}})
        viewed = [self._product() for _ in range(int(self.rng.poisson(VIEWS_PER_SESSION)) + (1 if buys else 0))]
        for product in viewed:
            yield event("commerce.productViews", {"commerce": {"productViews": {"value": 1}},
                                                  "productListItems": [product]})
        carted = [dict(prod, quantity=int(self.rng.integers(QUANTITY_CHOICES[0], QUANTITY_CHOICES[-1] + 1)))
                  for prod in viewed if buys or self.rng.random() < 0.15]
        for product in carted:
            yield event("commerce.productListAdds", {"commerce": {"productListAdds": {"value": 1}},
                                                     "productListItems": [product]})
        if buys and carted:
            items = [dict(prod, priceTotal=round(prod["priceTotal"] * prod["quantity"], 2)) for prod in carted]
            total = round(sum(item["priceTotal"] for item in items), 2)
            yield event("commerce.purchases", {
                "commerce": {"purchases": {"value": 1},
                             "order": {"priceTotal": total, "currencyCode": CURRENCY,
                                       "purchaseID": "ORD-" + self.p.ids.next()[-12:]}},
                "productListItems": items})

    def events(self, days: int) -> list[dict]:
        start, end = self.p.start, self.p.active_until(days)
        span = max(0.0, end - start)
        n_visits = int(self.rng.poisson(self.p.visit_rate * span))
        n_buys = int(self.rng.poisson(self.p.purchase_rate * span))
        sessions = [(float(d), False) for d in self.rng.uniform(start, end, n_visits)]
        sessions += [(float(d), True) for d in self.rng.uniform(start, end, n_buys)]
        sessions.sort()
        out: list[dict] = []
        for day, buys in sessions:
            out.extend(self.session(day, buys))
        # Events past the end of history (a session starting just before midnight) are cut.
        limit = _iso(self.history_start_ms + days * 86_400_000)
        return [e for e in out if e["timestamp"] < limit]


def _profile(person: _Person, history_start_ms: int, rng: np.random.Generator) -> dict:
    first = FIRST_NAMES[int(rng.integers(len(FIRST_NAMES)))]
    last = LAST_NAMES[int(rng.integers(len(LAST_NAMES)))]
    city, country, postal = CITIES[int(rng.integers(len(CITIES)))]
    created = _iso(history_start_ms + int(person.start * 86_400_000))
    return {
        "_id": person.ids.next(),
        "identityMap": {**_identity("CRMID", person.crm_id, True, True),
                        **_identity("Email", person.email, False, True)},
        "person": {"name": {"firstName": first, "lastName": last, "fullName": f"{first} {last}"}},
        "personalEmail": {"address": person.email},
        "homeAddress": {"city": city, "countryCode": country, "postalCode": postal},
        "_repo": {"createDate": created, "lastModifiedDate": created},
    }


def _ground_truth(person: _Person, opts: GenerateOptions) -> dict:
    return {
        "person_index": person.index,
        "crm_id": person.crm_id,
        "email": person.email,
        "ecids": person.ecids,
        "start_day": round(person.start, 3),
        "active_until_day": round(person.end_alive, 3),
        "purchase_rate_per_day": person.purchase_rate,
        "visit_rate_per_day": person.visit_rate,
        "spend_level": person.spend_level,
        "top_category": CATEGORIES[int(np.argmax(person.category_prefs))][1],
        "category_preferences": {name: round(float(share), 6)
                                 for (_, name), share in zip(CATEGORIES, person.category_prefs, strict=True)},
        # The products (top PREFERRED_PRODUCTS by chance of being looked at) and content sections.
        "product_preferences": _top_products(person.product_preferences()),
        "content_preferences": {section: round(float(share), 6)
                                for section, share in zip(SECTIONS, person.content_prefs, strict=True)},
        "oracle_purchase_probability": person.oracle_purchase_probability(opts.days, opts.oracle_horizon_days),
        "oracle_horizon_days": opts.oracle_horizon_days,
        "history_start_date": (opts.run_date - timedelta(days=opts.days)).isoformat(),
        "expected_order_value": expected_order_value(person.spend_level),
    }


PREFERRED_PRODUCTS = 30


def _top_products(chances: np.ndarray) -> dict[str, float]:
    flat = chances.ravel()
    if flat.size > 4 * PREFERRED_PRODUCTS:   # a large catalogue: sort only the leaders
        leaders = np.argpartition(-flat, PREFERRED_PRODUCTS)[:PREFERRED_PRODUCTS]
        best = leaders[np.lexsort((leaders, -flat[leaders]))]
    else:
        best = np.argsort(-flat, kind="stable")[:PREFERRED_PRODUCTS]
    return {sku(*divmod(int(i), chances.shape[1])): round(float(flat[i]), 6) for i in best}


def _mangle(record: dict, kind: int) -> str:
    """A bad record as real exports contain them: truncated, without _id, without identity."""
    line = json.dumps(record, separators=(",", ":"))
    if kind == 0:
        return line[: len(line) // 2]
    if kind == 1:
        return json.dumps({k: v for k, v in record.items() if k != "_id"}, separators=(",", ":"))
    return json.dumps({k: v for k, v in record.items() if k != "identityMap"}, separators=(",", ":"))


class _GzipLines:
    """Deterministic gzip JSON-lines writer (no timestamp or name in the header)."""

    def __init__(self, path: str):
        self.path = path
        self._raw = open(path, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=5)
        self._text = io.TextIOWrapper(self._gz, encoding="utf-8", newline="\n")

    def write(self, line: str) -> None:
        self._text.write(line)
        self._text.write("\n")

    def close(self) -> None:
        self._text.close()
        self._raw.close()


def _write_shard(shard: int, opts: GenerateOptions, history_start: int, dirs: dict[str, str]) -> dict[str, int]:
    """Everyone whose index is `shard` modulo `opts.files`, into the shard's own files.

    A shard depends only on the seed and its people, so shards can run in parallel and the
    bytes do not depend on how many run at once.
    """
    name = f"part-{shard:05d}.json.gz"
    events = _GzipLines(os.path.join(dirs["events"], name))
    profiles = _GzipLines(os.path.join(dirs["profiles"], name))
    truth = _GzipLines(os.path.join(dirs["ground_truth"], name))
    counts = dict(events=0, profiles=0, duplicates=0, bad=0)
    redelivered: list[str] = []
    for index in range(shard, opts.profiles, opts.files):
        # The same stream as SeedSequence(seed).spawn(n)[index], without spawning n of them.
        rng = np.random.default_rng(np.random.SeedSequence(opts.seed, spawn_key=(index,)))
        person = _Person(index, opts, rng)
        for record in _EventWriter(person, history_start).events(opts.days):
            roll = rng.random()
            if roll < opts.bad_record_rate:
                events.write(_mangle(record, int(rng.integers(3))))
                counts["bad"] += 1
                continue
            line = json.dumps(record, separators=(",", ":"))
            events.write(line)
            counts["events"] += 1
            if roll > 1 - opts.duplicate_rate:
                redelivered.append(line)
        if person.registered:
            profiles.write(json.dumps(_profile(person, history_start, rng), separators=(",", ":")))
            counts["profiles"] += 1
        truth.write(json.dumps(_ground_truth(person, opts), separators=(",", ":")))
    # At-least-once delivery: some events are exported again, later in the file.
    for line in redelivered:
        events.write(line)
    counts["duplicates"] = len(redelivered)
    for writer in (events, profiles, truth):
        writer.close()
    return counts


def generate(events_dir: str, profiles_dir: str, truth_dir: str, opts: GenerateOptions,
             progress=None, workers: int | None = None) -> GenerateResult:
    """Write events, profiles and ground truth into the three folders; return the counts.

    Earlier generated files (part-*) in those folders are replaced. Shards are written by
    `workers` processes (default: one per core); the output is the same for any number.
    """
    history_start = _epoch_ms(datetime.combine(opts.run_date - timedelta(days=opts.days),
                                               datetime.min.time(), tzinfo=timezone.utc))
    dirs = {"events": events_dir, "profiles": profiles_dir, "ground_truth": truth_dir}
    for folder in dirs.values():
        os.makedirs(folder, exist_ok=True)
        for stale in os.listdir(folder):
            if stale.startswith("part-"):
                os.remove(os.path.join(folder, stale))
    workers = max(1, min(workers or os.cpu_count() or 1, opts.files))
    totals = dict(events=0, profiles=0, duplicates=0, bad=0)
    # "spawn": a clean interpreter per worker, safe beside a running JVM gateway.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_write_shard, shard, opts, history_start, dirs) for shard in range(opts.files)]
        for done, future in enumerate(as_completed(futures), start=1):
            for key, value in future.result().items():
                totals[key] += value
            if progress:
                progress(done, opts.files, totals["events"])
    names = [f"part-{shard:05d}.json.gz" for shard in range(opts.files)]
    return GenerateResult(
        people=opts.profiles, events=totals["events"], profiles=totals["profiles"],
        duplicates=totals["duplicates"], bad_records=totals["bad"],
        files=[os.path.join(d, n) for d in (events_dir, profiles_dir) for n in names],
    )
