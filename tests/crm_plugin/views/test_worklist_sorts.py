"""The worklist's sortable columns: last order and last action, both directions with customers without
one last, ties, paging an ascending sort, the segments on offer, and the whole shop's tab counts."""
from __future__ import annotations

import csv
import io

import pytest
from django.core.cache import cache
from django.urls import reverse

from crm_plugin.events.importing import events_import_records
from crm_plugin.interventions.services import intervention_create
from crm_plugin.models import Customer, Intervention
from crm_plugin.web import selectors as sv
from tests.crm_plugin.views.builders import scored_customer

pytestmark = pytest.mark.django_db


def names(response) -> list[str]:
    return [row.customer.name for row in response.context["rows"]]


def _ordered(customer: Customer, when: str) -> None:
    events_import_records(records=[{"customer_id": customer.external_id, "kind": "order", "occurred_at": when,
                                    "amount": 20, "source_id": f"order-{customer.pk}-{when}"}])


def _acted(customer: Customer) -> None:
    intervention_create(customer=customer, by=customer.owner.user, action=Intervention.Action.CALL)


@pytest.fixture
def three(ana, version):
    """Ordered: Beth most recently, then Abe, Cleo never. Acted on: Cleo first, Abe since, Beth never."""
    abe, beth, cleo = (scored_customer(owner=ana, name=n, probabilities=[0.5], version=version)
                       for n in ("Abe", "Beth", "Cleo"))
    _ordered(abe, "2026-03-01T10:00:00Z")
    _ordered(beth, "2026-03-20T10:00:00Z")
    _acted(cleo)
    _acted(abe)
    return abe, beth, cleo


def test_last_order_sorts_most_recent_first_then_longest_ago_first_and_never_last(ana_client, three):
    response = ana_client.get("/", {"sort": "-last_order"})
    assert names(response) == ["Beth", "Abe", "Cleo"]
    content = response.content.decode()
    assert 'aria-sort="descending"><a href="?sort=last_order">Last order ↓</a>' in content
    assert "ordered by last order, most recent first." in content
    assert '<time datetime="2026-03-20T10:00:00+00:00">20 Mar 2026</time>' in content
    ascending = ana_client.get("/", {"sort": "last_order"})
    assert names(ascending) == ["Abe", "Beth", "Cleo"]
    assert "ordered by last order, longest ago first." in ascending.content.decode()


def test_last_action_sorts_both_ways_with_customers_nobody_acted_on_last(ana_client, three):
    response = ana_client.get("/", {"sort": "-last_action", "segment": "regular"})
    assert names(response) == ["Abe", "Cleo", "Beth"]
    # The header link keeps the other filters and flips the direction.
    assert ('aria-sort="descending"><a href="?sort=last_action&amp;segment=regular">Last action ↓</a>'
            in response.content.decode())
    assert names(ana_client.get("/", {"sort": "last_action"})) == ["Cleo", "Abe", "Beth"]


def test_ties_go_to_the_riskier_customer_and_ascending_is_the_reverse(ana_client, ana, version):
    for name, probability in (("Half", 0.5), ("Most", 0.8), ("More", 0.6)):
        scored_customer(owner=ana, name=name, probabilities=[probability], value="0", version=version)
    assert names(ana_client.get("/")) == ["Most", "More", "Half"]  # no yearly value yet: all at risk of 0
    assert names(ana_client.get("/", {"sort": "value"})) == ["Half", "More", "Most"]
    assert names(ana_client.get("/", {"sort": "-yearly"})) == ["Most", "More", "Half"]


def test_an_ascending_sort_pages_through_customers_with_a_value_then_those_without(ana_client, ana, version):
    acted = [scored_customer(owner=ana, name=f"Acted {i:03d}", probabilities=[0.5], version=version) for i in range(60)]
    for i in range(45):
        scored_customer(owner=ana, name=f"Untouched {i:03d}", probabilities=[0.3 + i / 100], version=version)
    for customer in acted:  # logged in this order: the first is the one acted on longest ago
        _acted(customer)
    pages = [names(ana_client.get("/", {"sort": "last_action", "page": n})) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [50, 50, 5]
    listed = [name for page in pages for name in page]
    # Oldest action first; then everybody nobody acted on, as the descending order has them but reversed
    # (the least risky first).
    assert listed == [c.name for c in acted] + [f"Untouched {i:03d}" for i in range(45)]
    descending = [name for n in (1, 2, 3) for name in names(ana_client.get("/", {"sort": "-last_action", "page": n}))]
    assert descending == listed[59::-1] + listed[:59:-1]
    # The export of the same list has the same order.
    export = ana_client.get(reverse("crm-worklist-export"), {"sort": "last_action"})
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [r["name"] for r in rows] == listed


def test_an_account_manager_is_offered_the_segments_of_their_own_book_only(ana_client, ana, ben, version):
    scored_customer(owner=ana, name="Vip", probabilities=[0.5], segment="vip", version=version)
    scored_customer(owner=ana, name="Plain", probabilities=[0.5], segment="", version=version)
    scored_customer(owner=ben, name="Bens", probabilities=[0.5], segment="wholesale", version=version)
    form = ana_client.get("/").context["form"]
    assert [value for value, _ in form.fields["segment"].choices] == ["", "vip"]


def test_a_large_shops_tab_counts_are_kept_for_a_minute(client, maria, ana, version, monkeypatch):
    client.force_login(maria.user)
    scored_customer(owner=ana, name="First", probabilities=[0.5], version=version)
    assert client.get("/").context["tabs"][0]["count"] == 1
    scored_customer(owner=ana, name="Second", probabilities=[0.5], version=version)
    assert client.get("/").context["tabs"][0]["count"] == 2  # a small shop is counted on every request
    monkeypatch.setattr(sv, "STAGE_COUNTS_EXACT_UP_TO", 1)
    client.get("/")
    scored_customer(owner=ana, name="Third", probabilities=[0.5], version=version)
    assert client.get("/").context["tabs"][0]["count"] == 2  # as counted a moment ago
    # One owner's book is always counted afresh.
    assert client.get("/", {"owner": ana.pk}).context["tabs"][0]["count"] == 3
    cache.delete(sv.STAGE_COUNTS_CACHE_KEY)  # what a minute does
    assert client.get("/").context["tabs"][0]["count"] == 3


def test_a_filter_matching_very_many_customers_is_counted_up_to_a_cap(ana_client, ana, version, monkeypatch):
    for i in range(5):
        scored_customer(owner=ana, name=f"Vip {i}", probabilities=[0.5 + i / 100], segment="vip", version=version)
    monkeypatch.setattr(sv, "WORKLIST_COUNT_CAP", 3)
    response = ana_client.get("/", {"segment": "vip"})
    assert "3+ customers match" in response.content.decode()
    assert names(response) == ["Vip 4", "Vip 3", "Vip 2"]  # the list ends at the cap
    monkeypatch.setattr(sv, "WORKLIST_COUNT_CAP", 10)
    assert "5 customers match" in ana_client.get("/", {"segment": "vip"}).content.decode()
