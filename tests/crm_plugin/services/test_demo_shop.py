"""The demo shop: deterministic, complete, follows the event conventions, and churners drift without giving it away."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import numpy as np
import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner, Customer, Event
from demo.shop import DEMO_PASSWORD, TICKET_SERIOUS, TICKET_ROUTINE, demo_shop_generate
from tests.crm_plugin.factories import CustomerFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # generates demo shops
END = date(2026, 6, 1)
END_AT = datetime(2026, 6, 1, tzinfo=dt_timezone.utc)


def _snapshot():
    return list(Event.objects.order_by("source_id").values_list(
        "customer__external_id", "kind", "occurred_at", "amount", "quantity", "rating", "text", "attributes",
        "source_id"))


def test_same_seed_same_shop_and_another_seed_differs():
    demo_shop_generate(customers=40, days=120, seed=7, end_date=END)
    first = _snapshot()
    customers = list(Customer.objects.order_by("external_id").values_list("external_id", "name", "email", "segment",
                                                                           "owner__user__username", "first_seen_at"))
    demo_shop_generate(customers=40, days=120, seed=7, end_date=END, replace=True)
    assert _snapshot() == first
    assert list(Customer.objects.order_by("external_id").values_list(
        "external_id", "name", "email", "segment", "owner__user__username", "first_seen_at")) == customers
    demo_shop_generate(customers=40, days=120, seed=8, end_date=END, replace=True)
    assert _snapshot() != first


def test_writes_owners_sign_ins_customers_and_every_event_kind():
    summary = demo_shop_generate(customers=150, days=200, seed=1, end_date=END)
    assert Customer.objects.count() == 150 == summary.n_customers
    assert Event.objects.count() == summary.n_events
    assert set(Event.objects.values_list("kind", flat=True).distinct()) == set(Event.Kind.values)
    assert all(summary.events_by_kind[kind] > 0 for kind in Event.Kind.values)
    assert set(Customer.objects.values_list("segment", flat=True)) == {"vip", "regular", "bargain_hunter", "new"}
    maria = AccountOwner.objects.get(user__username="maria")
    assert maria.is_manager and maria.slack_user_id == "U0DEMOMARIA"
    reports = AccountOwner.objects.filter(manager=maria)
    assert sorted(reports.values_list("user__username", flat=True)) == ["ana", "ben", "chloe", "dev"]
    assert AccountOwner.objects.filter(alert_mode=AccountOwner.AlertMode.DIGEST).count() == 1
    assert set(Customer.objects.values_list("owner__user__username", flat=True)) == {"ana", "ben", "chloe", "dev"}
    sign_in = RequestFactory().post("/login/")  # sign-in throttling needs the request, as the login page passes it
    for username in ["ana", "ben", "chloe", "dev", "maria", "admin"]:
        assert authenticate(sign_in, username=username, password=DEMO_PASSWORD) is not None, username
    assert authenticate(sign_in, username="admin", password=DEMO_PASSWORD).is_superuser
    assert summary.start == END_AT - timedelta(days=200) and summary.end == END_AT
    assert 0 < summary.share_no_order_last_90_days < 1


def test_events_follow_the_shared_attribute_conventions_and_stay_inside_the_history():
    demo_shop_generate(customers=120, days=150, seed=3, end_date=END)
    start = END_AT - timedelta(days=150)
    first_seen = dict(Customer.objects.values_list("pk", "first_seen_at"))
    for event in Event.objects.all():
        assert start <= event.occurred_at < END_AT
        assert event.occurred_at >= first_seen[event.customer_id]
        assert event.source_id.startswith("demo-3-")
        if event.kind == "order":
            assert set(event.attributes) == {"order_id", "category"} and event.amount > 0 and event.quantity >= 1
        elif event.kind == "visit":
            assert set(event.attributes) == {"pages", "duration_s"} and event.attributes["pages"] >= 1
        elif event.kind == "review":
            assert 1 <= event.rating <= 5 and event.text and set(event.attributes) == {"product"}
        elif event.kind == "ticket":
            attrs = event.attributes
            assert event.text and attrs["status"] in {"open", "closed"} and attrs["ticket_id"]
            if attrs["status"] == "closed":
                closed_at = datetime.fromisoformat(attrs["closed_at"])
                assert event.occurred_at <= closed_at < END_AT
            else:
                assert attrs["closed_at"] is None
        elif event.kind == "return":
            assert event.amount > 0 and event.quantity >= 1 and event.text
        elif event.kind == "coupon":
            attrs = event.attributes
            assert event.amount > 0 and isinstance(attrs["redeemed"], bool) and attrs["code"]
            # Dated redemptions, so a snapshot before the redemption sees an unused coupon.
            if attrs["redeemed"]:
                assert event.occurred_at <= datetime.fromisoformat(attrs["redeemed_at"]) < END_AT
            else:
                assert attrs["redeemed_at"] is None
    coupons = Event.objects.filter(kind="coupon")
    assert coupons.filter(attributes__redeemed=True).exists() and coupons.filter(attributes__redeemed=False).exists()
    # A demo customer's segment is fixed when they join: known from their first day.
    for segment_since, seen in Customer.objects.values_list("segment_since", "first_seen_at"):
        assert segment_since == seen


def test_hidden_churn_process_is_not_stored_anywhere_a_model_reads():
    demo_shop_generate(customers=30, days=60, seed=2, end_date=END)
    keys = set()
    for attributes in Customer.objects.values_list("attributes", flat=True):
        keys |= set(attributes)
    assert keys == {"country", "acquisition_channel", "newsletter"}
    event_keys = set()
    for attributes in Event.objects.values_list("attributes", flat=True):
        event_keys |= set(attributes)
    assert not {key for key in event_keys if "churn" in key or "propensity" in key}


def test_refuses_bad_sizes_with_a_clear_message():
    with pytest.raises(CrmError, match="--customers must be between 1"):
        demo_shop_generate(customers=0, days=10, seed=1)
    with pytest.raises(CrmError, match="--days must be between 1"):
        demo_shop_generate(customers=5, days=0, seed=1)


def test_command_refuses_a_second_shop_without_replace_and_if_empty_skips():
    call_command("generate_demo_shop", customers=20, days=60, seed=1, end_date=END, stdout=StringIO())
    events = Event.objects.count()
    with pytest.raises(CommandError, match="already has 20 customers; pass --replace"):
        call_command("generate_demo_shop", customers=20, days=60, seed=1, end_date=END, stdout=StringIO())
    out = StringIO()
    call_command("generate_demo_shop", customers=20, days=60, seed=1, if_empty=True, stdout=out)
    assert "Skipped: the database already has 20 customers" in out.getvalue()
    assert Customer.objects.count() == 20 and Event.objects.count() == events
    out = StringIO()
    call_command("generate_demo_shop", customers=25, days=60, seed=1, end_date=END, replace=True, stdout=out)
    assert Customer.objects.count() == 25
    text = out.getvalue()
    assert "customers: 25" in text and "no order in the last 90 days" in text
    assert "admin   / churn-demo" in text and "maria   / churn-demo" in text


def test_quiet_prints_nothing_and_a_bad_end_date_is_explained():
    out = StringIO()
    call_command("generate_demo_shop", customers=5, days=30, seed=1, quiet=True, stdout=out)
    assert out.getvalue() == "" and Customer.objects.count() == 5
    with pytest.raises(CommandError, match="--end-date: must be YYYY-MM-DD; got '2026-13-01'"):
        call_command("generate_demo_shop", "--end-date", "2026-13-01", "--replace")


def test_replace_never_deletes_imported_customers():
    CustomerFactory(external_id="SHOP-1")
    with pytest.raises(CrmError, match="--replace only removes demo customers"):
        demo_shop_generate(customers=5, days=30, seed=1, replace=True)
    assert Customer.objects.filter(external_id="SHOP-1").exists()


@pytest.fixture
def year_shop():
    truth: dict[str, dict] = {}
    demo_shop_generate(customers=1000, days=365, seed=11, end_date=END, truth=truth)
    external = dict(Customer.objects.values_list("pk", "external_id"))
    events = list(Event.objects.values_list("customer_id", "kind", "occurred_at", "rating", "text"))
    cutoff = END_AT - timedelta(days=90)
    orders: dict[int, list[datetime]] = {}
    for cid, kind, at, _rating, _text in events:
        if kind == "order":
            orders.setdefault(cid, []).append(at)
    for ats in orders.values():
        ats.sort()
    before = {cid: [a for a in ats if a < cutoff] for cid, ats in orders.items()}
    # The population a scoring run sees: customers who ordered in the 180 days before the cutoff.
    active = {cid for cid, ats in before.items() if ats and ats[-1] >= cutoff - timedelta(days=180)}
    churned = {cid for cid in active if not any(a >= cutoff for a in orders[cid])}
    hidden = {cid: truth[external[cid]] for cid in external}
    return events, cutoff, before, active, churned, orders, hidden


def test_churn_rate_per_90_day_window_is_in_a_useful_range(year_shop):
    _events, _cutoff, _before, active, churned, _orders, _hidden = year_shop
    assert 0.18 <= len(churned) / len(active) <= 0.40


def _orders_between(ats, since, until):
    return sum(1 for a in ats if since <= a < until)


def test_churners_drift_their_orders_thin_out_before_they_stop(year_shop):
    _events, _cutoff, _before, _active, _churned, orders, hidden = year_shop
    start = END_AT - timedelta(days=365)
    # Customers who (by the hidden process) stop during the history and were already buying 180 days
    # before that (so both 90-day windows are covered).
    leavers = {cid: h for cid, h in hidden.items()
               if start + timedelta(days=180) <= h["churn_at"] < END_AT and cid in orders
               and orders[cid][0] < h["churn_at"] - timedelta(days=180)}
    gradual = {cid: h for cid, h in leavers.items() if not h["abrupt"]}
    abrupt = {cid: h for cid, h in leavers.items() if h["abrupt"]}
    staying = [cid for cid, h in hidden.items() if h["churn_at"] >= END_AT + timedelta(days=365) and cid in orders
               and orders[cid][0] < END_AT - timedelta(days=180)]
    assert len(gradual) >= 40 and len(abrupt) >= 10 and len(staying) >= 100, (len(gradual), len(abrupt))

    def late_over_early(pairs):
        """Orders in the 90 days before a date over the 90 days before that (pooled); below 1: gaps grew."""
        late = sum(_orders_between(orders[cid], at - timedelta(days=90), at) for cid, at in pairs)
        early = sum(_orders_between(orders[cid], at - timedelta(days=180), at - timedelta(days=90)) for cid, at in pairs)
        return late / early

    gradual_ratio = late_over_early([(cid, h["churn_at"]) for cid, h in gradual.items()])
    abrupt_ratio = late_over_early([(cid, h["churn_at"]) for cid, h in abrupt.items()])
    staying_ratio = late_over_early([(cid, END_AT) for cid in staying])
    assert 0.85 < staying_ratio < 1.2
    assert gradual_ratio < 0.7 * staying_ratio, (gradual_ratio, staying_ratio)
    # Some leave with no warning at all: no decline before they stop.
    assert abrupt_ratio > 0.75 * staying_ratio, (abrupt_ratio, staying_ratio)


def test_labelled_churners_ordered_less_lately_than_customers_who_stay(year_shop):
    _events, cutoff, before, active, churned, _orders, _hidden = year_shop

    def late_over_early(cids):
        late = sum(_orders_between(before[cid], cutoff - timedelta(days=90), cutoff) for cid in cids)
        early = sum(_orders_between(before[cid], cutoff - timedelta(days=180), cutoff - timedelta(days=90))
                    for cid in cids)
        return late / early

    assert late_over_early(churned) < 0.7 * late_over_early(active - churned)


def test_no_single_signal_gives_churn_away(year_shop):
    events, cutoff, _before, active, churned, _orders, _hidden = year_shop
    window = cutoff - timedelta(days=120)

    def has(predicate):
        return {cid for cid, kind, at, rating, text in events
                if cid in active and window <= at < cutoff and predicate(kind, rating, text)}

    stayers = active - churned
    bad_review = has(lambda kind, rating, text: kind == "review" and rating <= 2)
    # Loyal customers write bad reviews too, and most churners never write one.
    assert len(bad_review & stayers) >= 0.05 * len(stayers)
    assert len(bad_review & churned) <= 0.5 * len(churned)
    assert 0.15 < len(bad_review & churned) / len(bad_review) < 0.8
    # Ticket text carries signal: serious topics go with churn more than routine questions do.
    serious = has(lambda kind, rating, text: kind == "ticket" and any(
        text.startswith(t.split("{p}")[0]) for t in TICKET_SERIOUS))
    routine = has(lambda kind, rating, text: kind == "ticket" and any(
        text.startswith(t.split("{p}")[0]) for t in TICKET_ROUTINE))
    serious_rate = len(serious & churned) / len(serious)
    routine_rate = len(routine & churned) / len(routine)
    assert serious_rate > routine_rate + 0.1, (serious_rate, routine_rate)
    assert serious_rate < 0.85


def test_orders_only_is_the_same_shop_without_anything_but_orders():
    full = demo_shop_generate(customers=40, days=120, seed=7, end_date=END)
    orders = list(Event.objects.filter(kind="order").order_by("source_id").values_list(
        "source_id", "customer__external_id", "occurred_at", "amount"))
    assert full.events_by_kind["visit"] and full.events_by_kind["review"]
    only = demo_shop_generate(customers=40, days=120, seed=7, end_date=END, replace=True, orders_only=True)
    assert set(Event.objects.values_list("kind", flat=True)) == {"order"}
    assert only.n_events == only.events_by_kind["order"] == full.events_by_kind["order"]
    assert list(Event.objects.order_by("source_id").values_list(
        "source_id", "customer__external_id", "occurred_at", "amount")) == orders
