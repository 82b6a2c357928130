"""The at-risk worklist: who sees what, ordering by value at risk, filters, CSV export, query counts."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm_plugin.models import Alert, Intervention
from tests.crm_plugin.factories import AccountOwnerFactory, InterventionFactory
from tests.crm_plugin.views.builders import scored_customer

pytestmark = pytest.mark.django_db


def names(response) -> list[str]:
    return [row.customer.name for row in response.context["rows"]]


def test_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get(reverse("crm-worklist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_sign_in_page_signs_in_and_lands_on_the_worklist(client, ana):
    page = client.get(reverse("login"))
    assert b"Sign in" in page.content
    response = client.post(reverse("login"), {"username": "ana", "password": "pass-word-123"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_wrong_password_is_explained(client, ana):
    response = client.post(reverse("login"), {"username": "ana", "password": "nope"})
    assert b"Please enter a correct username and password" in response.content


def test_owner_sees_own_book_ordered_by_value_at_risk(ana_client, ana, ben, version):
    scored_customer(owner=ana, name="Small risk big value", probabilities=[0.3], value="10000", version=version)  # 3000
    scored_customer(owner=ana, name="Big risk small value", probabilities=[0.9], value="1000", version=version)   # 900
    scored_customer(owner=ana, name="Middle", probabilities=[0.5], value="4000", version=version)                 # 2000
    scored_customer(owner=ben, name="Ben's customer", probabilities=[0.99], value="99999", version=version)
    response = ana_client.get("/")
    assert names(response) == ["Small risk big value", "Middle", "Big risk small value"]
    assert b"Ben&#x27;s customer" not in response.content
    assert response.context["role"] == "owner"
    assert b'name="owner"' not in response.content  # an owner has no owner filter


def test_manager_sees_every_book_and_can_filter_by_owner(client, ana, ben, maria, version):
    scored_customer(owner=ana, name="Ana one", probabilities=[0.5], version=version)
    scored_customer(owner=ben, name="Ben one", probabilities=[0.6], version=version)
    client.force_login(maria.user)
    assert set(names(client.get("/"))) == {"Ana one", "Ben one"}
    assert names(client.get("/", {"owner": ben.pk})) == ["Ben one"]


def test_admin_sees_everything_and_gets_an_admin_link(client, admin_user, ana, version):
    scored_customer(owner=ana, name="Ana one", probabilities=[0.5], version=version)
    client.force_login(admin_user)
    response = client.get("/")
    assert names(response) == ["Ana one"]
    assert b'href="/admin/"' in response.content


def test_unscored_customers_come_last(ana_client, ana, version):
    from tests.crm_plugin.factories import CustomerFactory

    CustomerFactory(owner=ana, name="Never scored")
    scored_customer(owner=ana, name="Scored", probabilities=[0.1], value="10", version=version)
    assert names(ana_client.get("/", {"stage": "all"})) == ["Scored", "Never scored"]


def test_band_and_segment_filters(ana_client, ana, version):
    scored_customer(owner=ana, name="High vip", probabilities=[0.8], segment="vip", version=version)
    scored_customer(owner=ana, name="High regular", probabilities=[0.7], segment="regular", version=version)
    scored_customer(owner=ana, name="Low vip", probabilities=[0.1], segment="vip", version=version)
    assert set(names(ana_client.get("/", {"band": "high"}))) == {"High vip", "High regular"}
    assert set(names(ana_client.get("/", {"segment": "vip"}))) == {"High vip"}  # the at-risk tab
    assert set(names(ana_client.get("/", {"segment": "vip", "stage": "all"}))) == {"High vip", "Low vip"}
    assert names(ana_client.get("/", {"band": "high", "segment": "vip"})) == ["High vip"]


def test_risk_rose_filter_keeps_only_rises_within_seven_days(ana_client, ana, version):
    scored_customer(owner=ana, name="Rising", probabilities=[0.2, 0.3, 0.6], version=version)
    scored_customer(owner=ana, name="Falling", probabilities=[0.8, 0.5, 0.4], version=version)
    scored_customer(owner=ana, name="Flat", probabilities=[0.5, 0.5], version=version)
    # Rose a lot, but more than 7 days before the latest score: the week itself was flat.
    old = scored_customer(owner=ana, name="Rose long ago", probabilities=[0.1] + [0.7] * 9, version=version)
    assert old.scores.count() == 10
    assert names(ana_client.get("/", {"rose": "on"})) == ["Rising"]


def test_no_action_yet_filter(ana_client, ana, version):
    acted = scored_customer(owner=ana, name="Called", probabilities=[0.7], version=version)
    scored_customer(owner=ana, name="Untouched", probabilities=[0.6], version=version)
    stale = scored_customer(owner=ana, name="Called long ago", probabilities=[0.5], version=version)
    InterventionFactory(customer=acted)
    InterventionFactory(customer=stale, created_at=timezone.now() - timedelta(days=45))
    assert names(ana_client.get("/", {"no_action": "on"})) == ["Untouched", "Called long ago"]


def test_rows_show_trend_reason_last_alert_and_last_action(ana_client, ana, version):
    customer = scored_customer(owner=ana, name="Rowena", probabilities=[0.2, 0.4, 0.8], version=version)
    Alert.objects.create(customer=customer, owner=ana, kind=Alert.Kind.SHARP_RISE, idempotency_key="k1")
    InterventionFactory(customer=customer, action=Intervention.Action.EMAIL)
    content = ana_client.get("/").content.decode()
    assert "80%" in content
    assert 'aria-label="trend over 3 scores: 20% to 80%"' in content
    assert "No order for 64 days; usually orders every 20 days" in content
    assert "Sharp rise" in content
    assert "Email" in content
    assert "+60" in content


def test_pagination_keeps_filters(ana_client, ana, version):
    for i in range(55):
        scored_customer(owner=ana, name=f"Cust {i:02d}", probabilities=[0.7], value=str(1000 + i), version=version)
    first = ana_client.get("/", {"band": "high"})
    assert len(first.context["rows"]) == 50
    assert 'href="?band=high&amp;page=2"' in first.content.decode()
    second = ana_client.get("/", {"band": "high", "page": 2})
    assert names(second) == [f"Cust {i:02d}" for i in range(4, -1, -1)]


def test_csv_export_streams_the_current_filter(ana_client, ana, version):
    customer = scored_customer(owner=ana, name="Exported", probabilities=[0.75], value="2000", segment="vip", version=version)
    scored_customer(owner=ana, name="Filtered out", probabilities=[0.1], segment="regular", version=version)
    InterventionFactory(customer=customer, action=Intervention.Action.CALL)
    response = ana_client.get(reverse("crm-worklist-export"), {"segment": "vip"})
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["name"] for r in rows] == ["Exported"]
    assert rows[0]["probability"] == "0.7500"
    assert rows[0]["value_at_risk"] == "1500.00"
    assert rows[0]["owner"] == "Ana"
    assert rows[0]["last_action"] == "Call"
    assert rows[0]["top_reason"] == "No order for 64 days; usually orders every 20 days"


def test_csv_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(ana_client, ana, version):
    """Names, emails, segments and review quotes come from the shop: a leading = + - @ tab or CR gets a quote."""
    scored_customer(
        owner=ana, name='=HYPERLINK("http://evil.example","Click")', email="@SUM(1+1)@mail.example",
        segment="+cmd|' /C calc'!A0", external_id="-2+3", probabilities=[0.9], value="-12.50", version=version,
        reasons=[{"code": "review", "text": "\tarrived broken", "weight": 0.3, "evidence": None}],
    )
    scored_customer(owner=ana, name="\rCR first", external_id="plain", probabilities=[0.1], version=version)
    response = ana_client.get(reverse("crm-worklist-export"), {"stage": "all"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    evil = next(r for r in rows if r["external_id"].endswith("-2+3"))
    assert evil["name"] == '\'=HYPERLINK("http://evil.example","Click")'
    assert evil["email"] == "'@SUM(1+1)@mail.example"
    assert evil["segment"] == "'+cmd|' /C calc'!A0"
    assert evil["external_id"] == "'-2+3"
    assert evil["top_reason"] == "'\tarrived broken"
    assert evil["value"] == "-12.50"  # a number is not a formula: left as it is
    assert evil["value_at_risk"] == "-11.25"
    other = next(r for r in rows if r["external_id"] == "plain")
    assert other["name"] == "'\rCR first"


def _book(owner, version, n):
    for i in range(n):
        customer = scored_customer(owner=owner, probabilities=[0.2, 0.5, 0.7], version=version)
        Alert.objects.create(customer=customer, owner=owner, kind=Alert.Kind.HIGH_RISK, idempotency_key=f"{owner.pk}-{i}")
        InterventionFactory(customer=customer)


@pytest.mark.parametrize("params", [{}, {"rose": "on", "band": "high", "segment": "regular"}])
def test_worklist_query_count_does_not_grow_with_rows(client, maria, version, params):
    client.force_login(maria.user)
    _book(AccountOwnerFactory(), version, 5)
    client.get("/", params)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/", params).status_code == 200
    _book(AccountOwnerFactory(), version, 45)
    with CaptureQueriesContext(connection) as many:
        response = client.get("/", params)
    assert len(response.context["rows"]) == 50
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert len(many) <= 12


def test_csv_export_query_count_does_not_grow_with_rows(client, maria, version):
    client.force_login(maria.user)
    _book(AccountOwnerFactory(), version, 5)
    with CaptureQueriesContext(connection) as few:
        b"".join(client.get(reverse("crm-worklist-export")).streaming_content)
    _book(AccountOwnerFactory(), version, 45)
    with CaptureQueriesContext(connection) as many:
        body = b"".join(client.get(reverse("crm-worklist-export")).streaming_content)
    assert body.count(b"\n") == 51
    assert len(many) == len(few)


# --- lifecycle tabs, sorting, search by number ------------------------------------------------

def test_the_worklist_opens_on_at_risk_customers_with_tabs_for_the_other_stages(ana_client, ana, version):
    scored_customer(owner=ana, name="Gone", probabilities=[0.95], value="9000", version=version, stage="lapsed")
    scored_customer(owner=ana, name="Slipping", probabilities=[0.7], value="1000", version=version)
    scored_customer(owner=ana, name="Fine", probabilities=[0.1], value="5000", version=version)
    response = ana_client.get("/")
    assert names(response) == ["Slipping"]
    content = response.content.decode()
    assert 'data-stage="lapsed">Lapsed <span class="n">1</span>' in content
    assert names(ana_client.get("/", {"stage": "lapsed"})) == ["Gone"]
    assert names(ana_client.get("/", {"stage": "all"})) == ["Gone", "Slipping", "Fine"]
    # A search with no tab looks in every stage.
    assert names(ana_client.get("/", {"q": "Gone"})) == ["Gone"]


def test_sortable_columns_keep_the_filters_in_the_url(ana_client, ana, version):
    scored_customer(owner=ana, name="Big", probabilities=[0.4], value="9000", version=version, segment="vip")
    scored_customer(owner=ana, name="Risky", probabilities=[0.9], value="100", version=version, segment="vip")
    assert names(ana_client.get("/", {"segment": "vip"})) == ["Big", "Risky"]
    response = ana_client.get("/", {"segment": "vip", "sort": "-risk"})
    assert names(response) == ["Risky", "Big"]
    content = response.content.decode()
    assert 'aria-sort="descending"><a href="?segment=vip&amp;sort=risk">' in content
    assert names(ana_client.get("/", {"segment": "vip", "sort": "risk"})) == ["Big", "Risky"]


def test_searching_by_the_number_slack_accepts_finds_the_customer(ana_client, ana, version):
    c = scored_customer(owner=ana, name="Numbered", probabilities=[0.7], version=version)
    scored_customer(owner=ana, name="Other", probabilities=[0.7], version=version)
    assert names(ana_client.get("/", {"q": str(c.pk)})) == ["Numbered"]


@pytest.mark.parametrize("q", ["99999999999999999999999", "²"])
def test_a_search_for_a_number_no_id_can_be_finds_nothing_instead_of_failing(ana_client, ana, version, q):
    scored_customer(owner=ana, name="Numbered", probabilities=[0.7], version=version)
    response = ana_client.get("/", {"q": q})
    assert response.status_code == 200 and names(response) == []


# --- manager tools: reassign, snooze, export a selection ---------------------------------------

def test_a_manager_reassigns_two_customers_and_the_new_owner_is_told(client, maria, ana, ben, version):
    from crm_plugin.models import Customer

    a = scored_customer(owner=ana, name="One", probabilities=[0.7], version=version)
    b = scored_customer(owner=ana, name="Two", probabilities=[0.8], version=version)
    client.force_login(maria.user)
    response = client.post(reverse("crm-worklist-bulk"), {"do": "reassign", "owner": ben.pk,
                                                         "customers": [a.pk, b.pk], "next": "/?stage=all"})
    assert response.status_code == 302 and response["Location"] == "/?stage=all"
    moved = Customer.objects.filter(pk__in=[a.pk, b.pk])
    assert {c.owner_id for c in moved} == {ben.pk}
    assert {c.owner_assigned_by_id for c in moved} == {maria.user.pk}
    notice = Alert.objects.get(kind="assigned")
    assert (notice.owner, notice.status, notice.payload["count"], notice.payload["by"]) == (ben, "pending", 2, "maria")
    page = client.get("/?stage=all").content.decode()
    assert "Moved 2 customers to Ben; Ben is told in Slack." in page


def test_an_account_manager_cannot_reassign(ana_client, ana, ben, version):
    a = scored_customer(owner=ana, name="Mine", probabilities=[0.7], version=version)
    response = ana_client.post(reverse("crm-worklist-bulk"), {"do": "reassign", "owner": ben.pk, "customers": [a.pk]})
    assert response.status_code == 403
    a.refresh_from_db()
    assert a.owner == ana and not Alert.objects.filter(kind="assigned").exists()
    assert "Reassign" not in ana_client.get("/").content.decode()


def test_bulk_snooze_only_of_customers_in_ones_book(ana_client, ana, ben, version):
    mine = scored_customer(owner=ana, name="Mine", probabilities=[0.7], version=version)
    theirs = scored_customer(owner=ben, name="Theirs", probabilities=[0.7], version=version)
    assert ana_client.post(reverse("crm-worklist-bulk"), {"do": "snooze", "customers": [mine.pk, theirs.pk]}).status_code == 403
    mine.refresh_from_db()
    assert mine.alerts_snoozed_until is None
    ana_client.post(reverse("crm-worklist-bulk"), {"do": "snooze", "customers": [mine.pk]})
    mine.refresh_from_db()
    assert mine.alerts_snoozed_until is not None


def test_bulk_export_of_a_selection(ana_client, ana, ben, version):
    a = scored_customer(owner=ana, name="A", probabilities=[0.7], version=version)
    scored_customer(owner=ana, name="B", probabilities=[0.7], version=version)
    theirs = scored_customer(owner=ben, name="Theirs", probabilities=[0.7], version=version)
    response = ana_client.post(reverse("crm-worklist-bulk"), {"do": "export", "customers": [a.pk, theirs.pk]})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    assert [r["name"] for r in rows] == ["A"]
