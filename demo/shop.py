"""A realistic synthetic shop (owners, customers, a year of behaviour, hidden churn) for demos and backtests.

The generative process is documented in docs/demo-shop.md. In short: every customer has a hidden
churn hazard and a churn day; before that day a customer-specific "drift" ramps up (longer gaps,
fewer visits, worse reviews, unresolved tickets, more returns, churn-flavoured text), while loyal
customers have temporary dips and one-off bad experiences so no single signal separates them.
The hidden hazard and churn day are never stored: models only see what a real shop would log.
"""
from __future__ import annotations

import bisect
import calendar
import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.events.importing import customer_last_order_refresh
from crm_plugin.models import AccountOwner, Customer, Event

UTC = dt_timezone.utc
DEMO_PASSWORD = "churn-demo"
EXTERNAL_ID_PREFIX = "demo-"
MAX_CUSTOMERS = 1_000_000
MAX_DAYS = 3 * 366
# Customers are generated in chunks so memory stays flat for large shops; the chunk size is part of
# the seed's meaning (each chunk has its own child RNG), so it must not change with the shop size.
CHUNK = 2000

# (username, display name, slack id, alert mode, is_manager, share of the customer book)
DEMO_OWNERS = [
    ("ana", "Ana Alvarez", "U0DEMOANA", AccountOwner.AlertMode.IMMEDIATE, False, 0.30),
    ("ben", "Ben Okafor", "U0DEMOBEN", AccountOwner.AlertMode.IMMEDIATE, False, 0.25),
    ("chloe", "Chloe Martin", "U0DEMOCHLOE", AccountOwner.AlertMode.IMMEDIATE, False, 0.25),
    ("dev", "Dev Patel", "U0DEMODEV", AccountOwner.AlertMode.DIGEST, False, 0.20),
    ("maria", "Maria Rossi", "U0DEMOMARIA", AccountOwner.AlertMode.IMMEDIATE, True, 0.0),
]
ADMIN_USERNAME = "admin"
OWNER_EMAIL_DOMAIN = "demo-shop.example"

SEGMENTS = ("vip", "regular", "bargain_hunter", "new")
# Behaviour types of established customers; customers who join during the history get one of these
# types too but carry the segment "new".
TYPE_SHARE = {"vip": 0.12, "regular": 0.55, "bargain_hunter": 0.33}
TYPES = list(TYPE_SHARE)
ORDER_RATE = {"vip": 1 / 13, "regular": 1 / 26, "bargain_hunter": 1 / 34}  # orders per day
AOV = {"vip": 140.0, "regular": 62.0, "bargain_hunter": 34.0}  # average order value
HAZARD = {"vip": 0.0007, "regular": 0.0015, "bargain_hunter": 0.0022}  # churn hazard per day
COUPON_RATE = {"vip": 1 / 150, "regular": 1 / 110, "bargain_hunter": 1 / 35}
NEW_SHARE = 0.30  # customers who join during the history window
NEW_HAZARD_FACTOR = 1.5
ONE_TIME_BUYER_SHARE = 0.22  # of new customers: buy once and never come back

COUNTRIES = (["GB", "DE", "FR", "NL", "ES", "IE", "IT", "SE", "US"],
             [0.28, 0.17, 0.13, 0.09, 0.09, 0.06, 0.08, 0.05, 0.05])
CHANNELS = (["organic", "paid_search", "social", "referral", "marketplace", "coupon_site"],
            [0.30, 0.22, 0.16, 0.10, 0.12, 0.10])
CHANNEL_HAZARD = {"organic": 1.0, "paid_search": 1.05, "social": 1.15, "referral": 0.8, "marketplace": 1.1,
                  "coupon_site": 1.35}
CATEGORIES = ["apparel", "shoes", "electronics", "home", "beauty", "books", "toys", "sports", "grocery"]
PRODUCTS = {
    "apparel": ["linen shirt", "wool jumper", "rain jacket", "denim jeans", "summer dress"],
    "shoes": ["running shoes", "leather boots", "canvas trainers", "sandals"],
    "electronics": ["wireless earbuds", "phone charger", "bluetooth speaker", "smart watch strap"],
    "home": ["ceramic mug set", "bed linen", "desk lamp", "storage baskets", "cast iron pan"],
    "beauty": ["face cream", "shampoo bar", "perfume", "lip balm set"],
    "books": ["cookbook", "crime novel", "kids picture book", "travel guide"],
    "toys": ["building blocks", "wooden puzzle", "plush bear", "board game"],
    "sports": ["yoga mat", "water bottle", "cycling gloves", "resistance bands"],
    "grocery": ["coffee beans", "olive oil", "tea selection", "dark chocolate"],
}
COMPETITORS = ["ShopRival", "MegaMart", "QuickBuy", "Zapp"]

REVIEW_POSITIVE = [
    "Great {p}, exactly as described. Fast delivery too.",
    "Love the {p}! Will buy again.",
    "Really good quality {p} for the price.",
    "Arrived quickly and well packed. Very happy with the {p}.",
    "Second time buying the {p}, still excellent.",
    "Perfect, the {p} fits well and looks great.",
    "Good {p}. Nothing to complain about.",
]
REVIEW_NEUTRAL = [
    "The {p} is okay, does the job.",
    "Average {p}. Delivery took a bit longer than expected.",
    "Fine, but the {p} looked different from the photos.",
    "Decent {p}, packaging could be better.",
]
# Everyday complaints: loyal customers write these too.
REVIEW_NEGATIVE = [
    "The {p} arrived late and the box was damaged.",
    "Disappointed with the {p}, the quality is poor.",
    "The {p} broke after a week.",
    "Wrong colour {p} delivered, had to send it back.",
    "Not worth the money, the {p} feels cheap.",
    "The {p} was smaller than described.",
]
# Complaints that carry intent to leave: more common among customers who are about to churn.
REVIEW_LEAVING = [
    "Found the same {p} cheaper at {c}. Quality here has gone down.",
    "This will be my last order, the {p} was a disappointment again.",
    "Used to love this shop but the {p} was poor and nobody cares. Going elsewhere.",
    "Third bad {p} in a row. I'm done with this shop.",
    "{c} delivers faster and the {p} is better there.",
    "Not ordering again after this {p}.",
]
TICKET_ROUTINE = [
    "What size should I pick for the {p}? I'm usually a medium.",
    "Can I change the delivery address for my order of the {p}?",
    "Please send me a copy of the invoice for my last order.",
    "When will the {p} be back in stock?",
    "My discount code didn't apply at checkout, can you help?",
    "Can I exchange the {p} for a different colour?",
    "How long does delivery to my area usually take?",
    "Is the {p} suitable for gifting? Do you offer gift wrap?",
]
# Topics that go with unhappy customers who leave (but loyal customers file some too).
TICKET_SERIOUS = [
    "My refund for the {p} still hasn't been processed after three weeks.",
    "The courier was rude and left the {p} in the rain.",
    "The {p} never arrived and nobody answers my emails.",
    "I was charged twice for the same order. Please fix this.",
    "Please close my account and delete my data.",
    "Second time the {p} arrived broken. I want a refund, not a replacement.",
    "I returned the {p} a month ago and still have no refund.",
]
RETURN_ROUTINE = ["Wrong size", "Changed my mind", "Ordered two sizes, kept one", "Colour not as expected",
                  "Gift not needed"]
RETURN_SERIOUS = ["Arrived damaged", "Not as described", "Quality worse than before", "Item faulty",
                  "Arrived too late"]

# Relative order intensity by weekday (Mon..Sun) and hour of day: people shop on Sunday evenings.
WEEKDAY_WEIGHT = np.array([0.92, 0.9, 0.95, 1.0, 1.03, 1.05, 1.15])
HOUR_WEIGHT = np.array([1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 3.5, 4, 4.5, 5, 5, 4.5, 4, 4, 4.5, 5.5, 7, 8, 7.5, 5, 2.5])
HOUR_P = HOUR_WEIGHT / HOUR_WEIGHT.sum()


@dataclass(frozen=True)
class DemoShopSummary:
    """What the generator wrote, for the command's printout and tests."""

    owners: list[str]
    customers_by_segment: dict[str, int]
    events_by_kind: dict[str, int]
    start: datetime
    end: datetime
    share_no_order_last_90_days: float
    sign_ins: list[tuple[str, str, str]] = field(default_factory=list)  # (username, password, role)

    @property
    def n_customers(self) -> int:
        return sum(self.customers_by_segment.values())

    @property
    def n_events(self) -> int:
        return sum(self.events_by_kind.values())


def demo_shop_customer_count() -> int:
    return Customer.objects.count()


def _holiday_factor(day: date) -> float:
    """Black Friday to mid-December peak, a quiet January, a small summer-sale bump."""
    november = calendar.monthcalendar(day.year, 11)
    fridays = [week[calendar.FRIDAY] for week in november if week[calendar.FRIDAY]]
    black_friday = date(day.year, 11, fridays[3])
    if black_friday <= day <= black_friday + timedelta(days=3):
        return 2.2
    if black_friday < day <= date(day.year, 12, 20):
        return 1.45
    if day.month == 1:
        return 0.8
    if day.month == 7 and day.day <= 14:
        return 1.2
    return 1.0


def _season(start: date, days: int) -> np.ndarray:
    out = np.empty(days)
    for i in range(days):
        day = start + timedelta(days=i)
        out[i] = WEEKDAY_WEIGHT[day.weekday()] * _holiday_factor(day)
    return out / out.mean()


@dataclass
class _Population:
    """Per-customer draws, including the hidden churn process (never stored)."""

    type_idx: np.ndarray
    is_new: np.ndarray
    start_day: np.ndarray  # first active day within the window (0 for established customers)
    first_seen_offset: np.ndarray  # days relative to window start (negative: before the window)
    churn_day: np.ndarray  # float day index; may lie beyond the window
    lead: np.ndarray  # days of drift before churn (about 1 for abrupt leavers)
    order_rate: np.ndarray
    visit_rate: np.ndarray
    coupon_rate: np.ndarray
    aov: np.ndarray
    mood: np.ndarray  # baseline satisfaction, mildly correlated with churn propensity
    country: np.ndarray
    channel: np.ndarray
    owner_idx: np.ndarray
    dip_start: np.ndarray
    dip_len: np.ndarray
    dip_depth: np.ndarray
    category_pref: np.ndarray


def _draw_population(rng: np.random.Generator, n: int, days: int) -> _Population:
    type_idx = rng.choice(len(TYPES), size=n, p=[TYPE_SHARE[t] for t in TYPES])
    is_new = rng.random(n) < NEW_SHARE
    join_day = rng.integers(0, days, size=n)
    start_day = np.where(is_new, join_day, 0)
    first_seen_offset = np.where(is_new, join_day, -rng.integers(30, 1100, size=n))
    country = rng.choice(len(COUNTRIES[0]), size=n, p=COUNTRIES[1])
    channel = rng.choice(len(CHANNELS[0]), size=n, p=CHANNELS[1])
    # Hidden churn propensity: log-normal heterogeneity around the type's hazard.
    z = rng.standard_normal(n)
    hazard = np.array([HAZARD[TYPES[t]] for t in type_idx]) * np.exp(0.8 * z - 0.32)
    hazard *= np.array([CHANNEL_HAZARD[CHANNELS[0][c]] for c in channel])
    hazard = np.where(is_new, hazard * NEW_HAZARD_FACTOR, hazard)
    churn_day = start_day + rng.exponential(1.0 / hazard)
    one_time = is_new & (rng.random(n) < ONE_TIME_BUYER_SHARE)
    churn_day = np.where(one_time, start_day + rng.uniform(1, 20, size=n), churn_day)
    abrupt = rng.random(n) < 0.25
    lead = np.where(abrupt | one_time, 1.0, rng.uniform(45, 180, size=n))
    order_rate = np.array([ORDER_RATE[TYPES[t]] for t in type_idx]) * rng.lognormal(0, 0.35, size=n)
    visit_rate = order_rate * rng.uniform(1.2, 2.6, size=n) + rng.uniform(0.0, 0.03, size=n)
    coupon_rate = np.array([COUPON_RATE[TYPES[t]] for t in type_idx]) * rng.lognormal(0, 0.3, size=n)
    aov = np.array([AOV[TYPES[t]] for t in type_idx]) * rng.lognormal(0, 0.3, size=n)
    mood = -0.5 * z + np.sqrt(1 - 0.5 ** 2) * rng.standard_normal(n)
    shares = np.array([o[5] for o in DEMO_OWNERS if o[5] > 0])
    owner_idx = rng.choice(len(shares), size=n, p=shares / shares.sum())
    # Loyal noise: a temporary dip (holiday, busy month, one bad delivery) that recovers.
    has_dip = rng.random(n) < 0.35
    dip_start = np.where(has_dip, rng.uniform(0, days, size=n), np.inf)
    dip_len = rng.uniform(20, 70, size=n)
    dip_depth = rng.uniform(0.3, 0.8, size=n)
    category_pref = rng.dirichlet(np.full(len(CATEGORIES), 0.5), size=n)
    return _Population(type_idx, is_new, start_day, first_seen_offset, churn_day, lead, order_rate, visit_rate,
                       coupon_rate, aov, mood, country, channel, owner_idx, dip_start, dip_len, dip_depth,
                       category_pref)


HOUR_CUM = list(np.cumsum(HOUR_P))
CATEGORY_COUNT = len(CATEGORIES)


def _poisson(r: random.Random, lam: float) -> int:
    """Knuth's method: fine for the small means used here, and far faster than a numpy call per draw."""
    limit, k, p = math.exp(-lam), 0, r.random()
    while p > limit:
        k += 1
        p *= r.random()
    return k


class _EventWriter:
    """Buffers event rows with deterministic source ids and inserts them with one prepared statement.

    A raw executemany is about ten times faster than `bulk_create` here (Django's per-field
    preparation dominated the run time); the rows follow the Event schema and its conventions.
    """

    COLUMNS = ["customer_id", "kind", "occurred_at", "amount", "quantity", "rating", "text", "attributes",
               "source_id", "imported_at"]

    def __init__(self, *, seed: int, start: datetime, end: datetime, batch_size: int = 5000, orders_only: bool = False):
        self.seed = seed
        self.orders_only = orders_only
        self.start_ts = start.timestamp()
        self.end_ts = end.timestamp()
        self.yearly_from = 0
        self.batch_size = batch_size
        self.rows: list[tuple] = []
        self.counts: Counter[str] = Counter()
        self.serial = self.order_serial = self.ticket_serial = 0
        self.postgres = connection.vendor == "postgresql"
        quote = connection.ops.quote_name
        values = ["%s"] * len(self.COLUMNS)
        values[self.COLUMNS.index("attributes")] = "%s::jsonb" if self.postgres else "%s"
        self.sql = (f"INSERT INTO {quote(Event._meta.db_table)} ({', '.join(quote(c) for c in self.COLUMNS)}) "
                    f"VALUES ({', '.join(values)})")
        self.imported_at = self.db_datetime(timezone.now())
        # Redemption delays come from a stream of their own, so adding them left every other draw
        # (and with it the shop a seed has always made) as it was.
        self.redeem_rng = random.Random(f"redeem-{seed}")

    def db_datetime(self, value: datetime):
        if self.postgres:
            return value
        return connection.ops.adapt_datetimefield_value(value)

    def at(self, day: float, r: random.Random, hour: int | None = None) -> datetime:
        if hour is None:
            hour = bisect.bisect_right(HOUR_CUM, r.random() * HOUR_CUM[-1])
            hour = min(hour, 23)
        return datetime.fromtimestamp(self.start_ts + int(day) * 86400 + hour * 3600 + r.randrange(3600), tz=UTC)

    def add(self, customer_id: int, kind: str, occurred_at: datetime, *, amount: Decimal | None = None,
            quantity: int | None = None, rating: int | None = None, text: str = "", attributes: dict) -> None:
        self.serial += 1  # counted for every event drawn, so an orders-only shop keeps the same source ids
        if self.orders_only and kind != Event.Kind.ORDER:
            return  # the same random draws, so the same customers place the same orders
        when = occurred_at if self.postgres else occurred_at.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
        self.rows.append((customer_id, kind, when, None if amount is None else str(amount), quantity, rating, text,
                          json.dumps(attributes), f"demo-{self.seed}-{self.serial}", self.imported_at))
        self.counts[kind] += 1
        if len(self.rows) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        with connection.cursor() as cursor:
            if self.postgres:
                # COPY is several times faster than a prepared INSERT on PostgreSQL.
                quote = connection.ops.quote_name
                copy_sql = (f"COPY {quote(Event._meta.db_table)} "
                            f"({', '.join(quote(c) for c in self.COLUMNS)}) FROM STDIN")
                with cursor.cursor.copy(copy_sql) as copy:
                    for row in self.rows:
                        copy.write_row(row)
            else:
                cursor.executemany(self.sql, self.rows)
        self.rows = []


def _money(value: float) -> Decimal:
    return Decimal(int(round(value * 100))).scaleb(-2)


def _generate_chunk(*, rng: np.random.Generator, pop: _Population, idx: np.ndarray, customer_ids: list[int],
                    days: int, season: np.ndarray, writer: _EventWriter, order_totals: np.ndarray,
                    last_order_day: np.ndarray) -> None:
    n = len(idx)
    t = np.arange(days, dtype=float)[None, :] + 0.5
    start = pop.start_day[idx][:, None]
    churn = pop.churn_day[idx][:, None]
    lead = pop.lead[idx][:, None]
    alive = (t >= start) & (t < churn)
    # Drift toward churn: 0 far from the churn day, 1 on it (ramp over the customer's lead time).
    # The square root makes the decline set in early and then level off, as disengagement does.
    drift = np.sqrt(np.clip(1.0 - (churn - t) / lead, 0.0, 1.0)) * alive
    dip_s = pop.dip_start[idx][:, None]
    dip = ((t >= dip_s) & (t < dip_s + pop.dip_len[idx][:, None])) * pop.dip_depth[idx][:, None] * alive
    trouble = np.maximum(drift, dip)

    order_lam = pop.order_rate[idx][:, None] * season[None, :] * np.clip(1.0 - 0.8 * drift - 0.6 * dip, 0.05, 1.0) * alive
    orders = rng.poisson(order_lam)
    # Every customer who joins during the window places an order on the day they join.
    for row in np.nonzero(pop.is_new[idx])[0]:
        d = int(pop.start_day[idx][row])
        if d < days and orders[row, d] == 0:
            orders[row, d] = 1
    browse_after = (t >= churn) & (t < churn + 60)
    visit_lam = pop.visit_rate[idx][:, None] * season[None, :] * (
        (1.0 - 0.75 * trouble) * alive + 0.08 * browse_after)
    visits = rng.poisson(visit_lam)
    ticket_lam = (1 / 260) * (1.0 + 6.0 * drift + 2.0 * dip) * alive
    tickets = rng.poisson(ticket_lam)
    coupons = rng.poisson(pop.coupon_rate[idx][:, None] * alive)
    # Scalar draws per event use Python's generator (seeded from this chunk's numpy stream): a numpy
    # call per scalar costs microseconds, which adds up to most of the run time over 100k+ events.
    r = random.Random(int(rng.integers(0, 2**63)))

    for row in range(n):
        g = int(idx[row])
        cid = customer_ids[row]
        cum_prefs = list(np.cumsum(pop.category_pref[g]))
        type_name = TYPES[pop.type_idx[g]]
        for day in np.nonzero(orders[row])[0].tolist():
            for _ in range(int(orders[row, day])):
                _order(r, writer, cid, g, day, type_name, cum_prefs, pop, float(drift[row, day]),
                       float(dip[row, day]), float(season[day]), order_totals, last_order_day)
        for day in np.nonzero(visits[row])[0].tolist():
            lam = 4.5 * (1.0 - 0.5 * float(trouble[row, day]))
            for _ in range(int(visits[row, day])):
                pages = 1 + _poisson(r, lam)
                writer.add(cid, Event.Kind.VISIT, writer.at(day, r),
                           attributes={"pages": pages, "duration_s": int(pages * r.uniform(15, 95))})
        for day in np.nonzero(tickets[row])[0].tolist():
            _ticket(r, writer, cid, day, cum_prefs, float(drift[row, day]), float(dip[row, day]))
        # Some who drifted away leave with a parting complaint (refund chased, account closed) after
        # their last order; abrupt leavers never do.
        churn_day = float(pop.churn_day[g])
        if pop.lead[g] > 1 and churn_day < days and r.random() < 0.3:
            parting = int(churn_day + r.uniform(0, 20))
            if parting < days:
                _ticket(r, writer, cid, parting, cum_prefs, 1.0, 0.0)
        for day in np.nonzero(coupons[row])[0].tolist():
            redeemed = r.random() < (0.7 * (1.0 - 0.7 * float(trouble[row, day]))
                                     + (0.15 if type_name == "bargain_hunter" else 0.0))
            value = r.choice((5, 10, 15, 20))
            issued = writer.at(day, r)
            # Redeemed a few days after it arrived (with the next order, roughly); one still unused
            # at the end date is not redeemed (yet), as a shop's export would say.
            redeemed_at = issued + timedelta(days=writer.redeem_rng.expovariate(1 / 4.0))
            if not redeemed or redeemed_at.timestamp() >= writer.end_ts:
                redeemed, redeemed_at = False, None
            writer.add(cid, Event.Kind.COUPON, issued, amount=Decimal(value),
                       attributes={"code": f"SAVE{value}-{r.randrange(1000, 10000)}", "redeemed": redeemed,
                                   "redeemed_at": redeemed_at.isoformat() if redeemed_at else None})


def _product(r: random.Random, cum_prefs: list[float]) -> tuple[str, str]:
    category = CATEGORIES[min(bisect.bisect_right(cum_prefs, r.random() * cum_prefs[-1]), CATEGORY_COUNT - 1)]
    return category, r.choice(PRODUCTS[category])


def _order(r: random.Random, writer: _EventWriter, cid: int, g: int, day: int, type_name: str,
           cum_prefs: list[float], pop: _Population, drift: float, dip: float, season_factor: float,
           order_totals: np.ndarray, last_order_day: np.ndarray) -> None:
    category, product = _product(r, cum_prefs)
    quantity = 1 + _poisson(r, 1.1 if type_name == "vip" else 0.6)
    # Baskets shrink a little as a customer drifts away, and grow in the holiday peak.
    value = pop.aov[g] * r.lognormvariate(0, 0.45) * (1.0 - 0.25 * drift) * (1.0 + 0.15 * (season_factor - 1.0))
    amount = _money(max(value, 4.0))
    occurred_at = writer.at(day, r)
    writer.order_serial += 1
    order_id = f"D{writer.seed}-{writer.order_serial:08d}"
    writer.add(cid, Event.Kind.ORDER, occurred_at, amount=amount, quantity=quantity,
               attributes={"order_id": order_id, "category": category})
    if day >= writer.yearly_from:
        order_totals[g] += float(amount)
    if day > last_order_day[g]:
        last_order_day[g] = day
    days_left = (writer.end_ts - occurred_at.timestamp()) / 86400
    trouble = max(drift, dip)
    # A review follows some orders a few days later; unhappy customers are keener to write one.
    if r.random() < (0.38 if type_name == "vip" else 0.28) + 0.35 * drift + 0.15 * dip:
        lag = r.uniform(2, 14)
        if lag < days_left:
            score = 4.3 + 0.5 * pop.mood[g] - 2.6 * drift - 1.3 * dip + r.gauss(0, 0.8)
            if r.random() < 0.05:  # a one-off bad experience: anyone can have one
                score = r.uniform(0.5, 2.4)
            rating = int(min(5, max(1, round(score))))
            if rating >= 4:
                text = r.choice(REVIEW_POSITIVE)
            elif rating == 3:
                text = r.choice(REVIEW_NEUTRAL)
            elif r.random() < 0.06 + 0.55 * drift:
                text = r.choice(REVIEW_LEAVING)
            else:
                text = r.choice(REVIEW_NEGATIVE)
            writer.add(cid, Event.Kind.REVIEW, occurred_at + timedelta(days=lag), rating=rating,
                       text=text.format(p=product, c=r.choice(COMPETITORS)), attributes={"product": product})
    # Some orders come back, more often when things go wrong.
    if r.random() < 0.05 + 0.25 * trouble + (0.03 if type_name == "bargain_hunter" else 0.0):
        lag = r.uniform(3, 25)
        if lag < days_left:
            serious = r.random() < 0.25 + 0.5 * trouble
            returned = 1 + r.randrange(quantity)
            writer.add(cid, Event.Kind.RETURN, occurred_at + timedelta(days=lag),
                       amount=_money(float(amount) * returned / quantity), quantity=returned,
                       text=r.choice(RETURN_SERIOUS if serious else RETURN_ROUTINE), attributes={"order_id": order_id})


def _ticket(r: random.Random, writer: _EventWriter, cid: int, day: int, cum_prefs: list[float], drift: float,
            dip: float) -> None:
    _category, product = _product(r, cum_prefs)
    serious = r.random() < 0.18 + 0.5 * drift + 0.2 * dip
    text = r.choice(TICKET_SERIOUS if serious else TICKET_ROUTINE).format(p=product)
    occurred_at = writer.at(day, r, hour=r.randrange(8, 20))
    writer.ticket_serial += 1
    # Serious tickets take longer to close; customers on their way out are left waiting more often.
    unresolved = r.random() < 0.06 + 0.4 * drift + (0.1 if serious else 0.0)
    closed_at = None if unresolved else occurred_at + timedelta(days=r.expovariate(1 / (6.0 if serious else 1.5)))
    if closed_at is not None and closed_at.timestamp() >= writer.end_ts:
        closed_at = None  # not closed yet at the end of the history
    writer.add(cid, Event.Kind.TICKET, occurred_at, text=text,
               attributes={"ticket_id": f"T{writer.seed}-{writer.ticket_serial:07d}",
                           "status": "open" if closed_at is None else "closed",
                           "closed_at": closed_at.isoformat() if closed_at else None})


def _validate(*, customers: int, days: int, end_date: date | None) -> date:
    if not 1 <= customers <= MAX_CUSTOMERS:
        raise CrmError(f"--customers must be between 1 and {MAX_CUSTOMERS:,}; got {customers}.", code="invalid_size")
    if not 1 <= days <= MAX_DAYS:
        raise CrmError(f"--days must be between 1 and {MAX_DAYS}; got {days}.", code="invalid_size")
    return end_date or timezone.now().astimezone(UTC).date()


def _owners_upsert() -> tuple[list[AccountOwner], list[tuple[str, str, str]]]:
    """Create or refresh the demo sign-ins (idempotent: a rerun resets their passwords and settings)."""
    User = get_user_model()
    # One hash for all six sign-ins: each PBKDF2 hash takes about half a second by design.
    password_hash = make_password(DEMO_PASSWORD)
    owners: dict[str, AccountOwner] = {}
    sign_ins = []
    for username, name, slack_id, mode, is_manager, _share in DEMO_OWNERS:
        first, last = name.split(" ", 1)
        email = f"{username}@{OWNER_EMAIL_DOMAIN}"
        user, _ = User.objects.get_or_create(username=username, defaults={"email": email})
        user.first_name, user.last_name, user.email, user.is_active = first, last, email, True
        user.is_staff = is_manager  # the manager may use the admin; account managers use the CRM views
        user.password = password_hash
        user.save()
        owner, _ = AccountOwner.objects.update_or_create(
            user=user, defaults={"name": name, "email": email, "slack_user_id": slack_id, "alert_mode": mode,
                                 "is_manager": is_manager})
        owners[username] = owner
        sign_ins.append((username, DEMO_PASSWORD, "manager (sees every book)" if is_manager else "account manager"))
    manager = owners["maria"]
    AccountOwner.objects.filter(pk__in=[o.pk for u, o in owners.items() if u != "maria"]).update(manager=manager)
    admin, _ = User.objects.get_or_create(username=ADMIN_USERNAME, defaults={"email": f"admin@{OWNER_EMAIL_DOMAIN}"})
    admin.is_staff = admin.is_superuser = admin.is_active = True
    admin.password = password_hash
    admin.save()
    sign_ins.append((ADMIN_USERNAME, DEMO_PASSWORD, "superuser (Django admin)"))
    return [owners[o[0]] for o in DEMO_OWNERS if o[5] > 0], sign_ins


def demo_shop_delete() -> int:
    """Delete the demo customers (and with them their events, scores, alerts and interventions)."""
    demo = Customer.objects.filter(external_id__startswith=EXTERNAL_ID_PREFIX)
    # Events have no dependents, so this is one DELETE instead of Django collecting 100k+ rows.
    Event.objects.filter(customer__in=demo)._raw_delete(Event.objects.db)
    count = demo.count()
    demo.delete()
    return count


@transaction.atomic
def demo_shop_generate(*, customers: int, days: int, seed: int, end_date: date | None = None, orders_only: bool = False,
                       replace: bool = False, progress: Callable[[int, int], None] | None = None,
                       truth: dict[str, dict] | None = None) -> DemoShopSummary:
    """Write a synthetic shop: demo owners and sign-ins, `customers` customers and `days` days of events.

    Deterministic for a seed and end date. Refuses when customers already exist unless `replace`,
    which first deletes the previous demo shop (imported customers are never touched).
    `truth`, when given, is filled in memory with each customer's hidden churn date and drift
    lead time (by external id) for tests and oracle studies; it is never written to the database.
    """
    end_day = _validate(customers=customers, days=days, end_date=end_date)
    if replace:
        demo_shop_delete()
    existing = Customer.objects.count()
    if existing:
        hint = ("; --replace only removes demo customers, and these were imported" if replace
                else "; pass --replace to delete the previous demo shop first")
        raise CrmError(f"The database already has {existing:,} customers{hint}.", code="not_empty")

    end = datetime.combine(end_day, time.min, tzinfo=UTC)
    start = end - timedelta(days=days)
    root = np.random.SeedSequence(seed)
    pop_seed, names_seed, *chunk_seeds = root.spawn(2 + (customers + CHUNK - 1) // CHUNK)
    pop = _draw_population(np.random.default_rng(pop_seed), customers, days)
    season = _season(start.date(), days)
    owners, sign_ins = _owners_upsert()

    from faker import Faker  # imported here: Faker's import is slow and only the generator needs it

    fake = Faker("en_GB")
    fake.seed_instance(int(np.random.default_rng(names_seed).integers(0, 2**31)))
    type_rng = np.random.default_rng(names_seed)
    writer = _EventWriter(seed=seed, start=start, end=end, orders_only=orders_only)
    order_totals = np.zeros(customers)  # spend within the last 365 days
    writer.yearly_from = max(0, days - 365)
    last_order_day = np.full(customers, -1, dtype=int)
    segments: Counter[str] = Counter()
    for chunk_no, chunk_seed in enumerate(chunk_seeds):
        idx = np.arange(chunk_no * CHUNK, min(customers, (chunk_no + 1) * CHUNK))
        rows = []
        for g in idx:
            first, last = fake.first_name(), fake.last_name()
            segment = "new" if pop.is_new[g] else TYPES[pop.type_idx[g]]
            segments[segment] += 1
            domain = ("example.com", "example.net", "example.org")[int(type_rng.integers(3))]
            # Customers who join in the window are first seen at the start of their first order's day.
            first_seen_at = start + timedelta(days=int(pop.first_seen_offset[g]),
                                              hours=0 if pop.is_new[g] else int(type_rng.integers(7, 23)))
            rows.append(Customer(
                external_id=f"{EXTERNAL_ID_PREFIX}{g + 1:07d}", name=f"{first} {last}",
                email=f"{first}.{last}{g + 1}@{domain}".lower().replace(" ", "").replace("'", ""),
                # A demo customer's segment is fixed when they join (their behaviour type, or "new"),
                # so it is known from their first day, and past snapshots may show it.
                segment=segment, segment_since=first_seen_at, owner=owners[pop.owner_idx[g]],
                first_seen_at=first_seen_at,
                attributes={"country": COUNTRIES[0][pop.country[g]], "acquisition_channel": CHANNELS[0][pop.channel[g]],
                            "newsletter": bool(type_rng.random() < 0.45)},
            ))
        created = Customer.objects.bulk_create(rows, batch_size=1000)
        if any(c.pk is None for c in created):  # databases that cannot return ids from a bulk insert
            ids = dict(Customer.objects.filter(external_id__in=[c.external_id for c in created])
                       .values_list("external_id", "pk"))
            customer_ids = [ids[c.external_id] for c in created]
        else:
            customer_ids = [c.pk for c in created]
        _generate_chunk(rng=np.random.default_rng(chunk_seed), pop=pop, idx=idx, customer_ids=customer_ids,
                        days=days, season=season, writer=writer, order_totals=order_totals,
                        last_order_day=last_order_day)
        writer.flush()
        customer_last_order_refresh(customer_ids=customer_ids)  # the events went in without the importer
        # Expected yearly spend from the last 365 days, so value at risk works before any scoring.
        yearly = order_totals[idx] * (365 / min(days, 365))
        updates = [Customer(pk=cid, value=_money(v)) for cid, v in zip(customer_ids, yearly)]
        Customer.objects.bulk_update(updates, ["value"], batch_size=1000)
        if progress:
            progress(int(idx[-1]) + 1, customers)
    if truth is not None:
        for g in range(customers):
            # Capped at a century: a very loyal customer's draw could otherwise overflow a datetime.
            churn_at = start + timedelta(days=float(min(pop.churn_day[g], days + 36_500)))
            truth[f"{EXTERNAL_ID_PREFIX}{g + 1:07d}"] = {
                "churn_at": churn_at, "lead_days": float(pop.lead[g]), "abrupt": bool(pop.lead[g] <= 1)}

    no_recent = float(np.mean(last_order_day < days - 90)) if days > 90 else 0.0
    return DemoShopSummary(
        owners=[o.name for o in owners] + ["Maria Rossi (manager)"],
        customers_by_segment={s: segments.get(s, 0) for s in SEGMENTS},
        events_by_kind={k: writer.counts.get(k, 0) for k in Event.Kind.values},
        start=start, end=end, share_no_order_last_90_days=no_recent, sign_ins=sign_ins,
    )
