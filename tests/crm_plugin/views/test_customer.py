"""The customer 360 page: access, what it shows, logging actions and outcomes, query counts."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm_plugin import formatting
from crm_plugin.events.importing import events_import_records
from crm_plugin.models import Event, Intervention
from tests.crm_plugin.factories import EventFactory, InterventionFactory
from tests.crm_plugin.views.builders import scored_customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(ana, version):
    return scored_customer(
        owner=ana, name="Clara Quinn", probabilities=[0.3, 0.5, 0.82], value="2500.00", segment="vip", version=version,
        external_id="SHOP-77",
    )


def url(customer) -> str:
    return reverse("crm-customer", args=[customer.pk])


def test_another_owners_customer_is_forbidden(client, ben, customer):
    client.force_login(ben.user)
    response = client.get(url(customer))
    assert response.status_code == 403
    assert b"another owner" in response.content
    assert b"Clara Quinn" not in response.content


def test_missing_customer_is_404(ana_client):
    assert ana_client.get(reverse("crm-customer", args=[999999])).status_code == 404


def test_manager_can_open_any_customer(client, maria, customer):
    client.force_login(maria.user)
    assert client.get(url(customer)).status_code == 200


def test_header_probability_reasons_and_chart(ana_client, customer):
    content = ana_client.get(url(customer)).content.decode()
    for text in ["Clara Quinn", "SHOP-77", "Ana", "vip", "€2,500", "1.1 years", "82%", "High risk",
                 "<strong>€2,050</strong> at risk of €2,500 a year", "No order for 64 days; usually orders every 20 days",
                 "+52 pts in 7 days"]:
        assert text in content, text
    assert '<blockquote class="evidence">“arrived broken”</blockquote>' in content
    assert "Churn probability over time: from 30%" in content  # the SVG's accessible summary
    assert content.count("<circle") >= 3


def test_timeline_shows_every_kind_with_review_text_and_caps_with_show_more(ana_client, customer):
    now = timezone.now()
    EventFactory(customer=customer, kind=Event.Kind.REVIEW, rating=1, text="arrived broken", amount=None,
                 occurred_at=now - timedelta(days=1), attributes={"product": "Kettle"})
    EventFactory(customer=customer, kind=Event.Kind.TICKET, text="refund not processed", amount=None,
                 occurred_at=now - timedelta(days=2), attributes={"ticket_id": "T1", "status": "open", "closed_at": None})
    EventFactory(customer=customer, kind=Event.Kind.RETURN, text="too small", amount=Decimal("19.99"),
                 occurred_at=now - timedelta(days=3))
    EventFactory(customer=customer, kind=Event.Kind.COUPON, amount=Decimal("5.00"),
                 occurred_at=now - timedelta(days=4), attributes={"code": "COMEBACK5", "redeemed": False})
    EventFactory(customer=customer, kind=Event.Kind.VISIT, amount=None, occurred_at=now - timedelta(days=5),
                 attributes={"pages": 7, "duration_s": 300})
    for i in range(30):
        EventFactory(customer=customer, occurred_at=now - timedelta(days=10 + i), attributes={"category": "garden"})
    content = ana_client.get(url(customer)).content.decode()
    for text in ["“arrived broken”", "Kettle", "★☆☆☆☆", "“refund not processed”", ">open<", "“too small”",
                 "COMEBACK5", "not redeemed", "7 pages", "garden"]:
        assert text in content, text
    assert content.count('class="ev ev-') == 25
    assert "events=50" in content and "Show more" in content
    more = ana_client.get(url(customer), {"events": 50}).content.decode()
    assert more.count('class="ev ev-') == 35 and "Show more" not in more
    reviews = ana_client.get(url(customer), {"kind": "review"}).content.decode()
    assert reviews.count('class="ev ev-') == 1


def test_log_an_action_redirects_and_shows_it(ana_client, ana, customer):
    follow_up = (timezone.localdate() + timedelta(days=7)).isoformat()
    response = ana_client.post(url(customer), {
        "form": "action", "act-action": "call", "act-note": "Offered free returns", "act-follow_up_on": follow_up,
    })
    assert response.status_code == 302
    # Back at the form, where the confirmation is shown: in view after the submit, on a phone too.
    assert response["Location"] == url(customer) + "#log-action"
    intervention = Intervention.objects.get(customer=customer)
    assert (intervention.action, intervention.created_by, intervention.source) == ("call", ana.user, "crm")
    page = ana_client.get(url(customer)).content.decode()
    assert "Logged: Call for Clara Quinn." in page
    assert "Offered free returns" in page
    assert "Follow up on" in page


def test_follow_up_in_the_past_is_shown_next_to_the_date(ana_client, customer):
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    response = ana_client.post(url(customer), {"form": "action", "act-action": "email", "act-follow_up_on": yesterday})
    assert response.status_code == 400
    assert response.context["action_form"].errors == {"follow_up_on": ["The follow-up date is in the past."]}
    assert 'id="err-follow-up">The follow-up date is in the past.' in response.content.decode()
    assert not Intervention.objects.exists()


def test_missing_or_unknown_action_is_shown_next_to_the_action(ana_client, customer):
    response = ana_client.post(url(customer), {"form": "action", "act-action": ""})
    assert response.context["action_form"].errors == {"action": ["Choose what you did."]}
    response = ana_client.post(url(customer), {"form": "action", "act-action": "pigeon"})
    assert "Unknown action 'pigeon'" in response.context["action_form"].errors["action"][0]
    assert not Intervention.objects.exists()


def test_record_an_outcome(ana_client, ana, customer):
    intervention = InterventionFactory(customer=customer)
    response = ana_client.post(url(customer), {
        "form": "outcome", "out-intervention": intervention.pk, "out-outcome": "retained", "out-note": "ordered again",
    })
    assert response.status_code == 302
    intervention.refresh_from_db()
    assert (intervention.outcome, intervention.outcome_note, intervention.outcome_by) == ("retained", "ordered again", ana.user)
    page = ana_client.get(url(customer)).content.decode()
    assert "Outcome recorded: Call → Retained." in page
    assert 'class="badge outcome-retained">Retained' in page


def test_bad_outcome_is_shown_under_that_action(ana_client, customer):
    intervention = InterventionFactory(customer=customer)
    response = ana_client.post(url(customer), {"form": "outcome", "out-intervention": intervention.pk, "out-outcome": "maybe"})
    assert response.status_code == 400
    assert response.context["outcome_errors"]["pk"] == intervention.pk
    assert "Unknown outcome 'maybe'" in response.context["outcome_errors"]["outcome"][0]
    intervention.refresh_from_db()
    assert intervention.outcome == ""


def test_cannot_record_outcome_of_another_customers_action(ana_client, ana, customer, version):
    other = scored_customer(owner=ana, version=version)
    foreign = InterventionFactory(customer=other)
    response = ana_client.post(url(customer), {"form": "outcome", "out-intervention": foreign.pk, "out-outcome": "churned"})
    assert "That action does not belong to this customer." in response.content.decode()
    foreign.refresh_from_db()
    assert foreign.outcome == ""


def test_owner_cannot_post_to_another_owners_customer(client, ben, customer):
    client.force_login(ben.user)
    response = client.post(url(customer), {"form": "action", "act-action": "call"})
    assert response.status_code == 403
    assert not Intervention.objects.exists()


def test_score_chart_marks_orders_alerts_and_actions_within_its_dates(ana_client, ana, customer):
    from crm_plugin.models import Alert

    now = timezone.now()
    EventFactory(customer=customer, kind=Event.Kind.ORDER, amount=Decimal("54.00"), occurred_at=now - timedelta(days=1))
    EventFactory(customer=customer, kind=Event.Kind.ORDER, amount=Decimal("77.00"), occurred_at=now - timedelta(days=30))
    Alert.objects.create(customer=customer, owner=ana, kind="high_risk", status="sent", idempotency_key="a1",
                         created_at=now - timedelta(hours=30), sent_at=now - timedelta(hours=30))
    Alert.objects.create(customer=customer, owner=ana, kind="high_risk", status="held_out", idempotency_key="a2",
                         created_at=now - timedelta(hours=20))  # nobody was told: not marked
    InterventionFactory(customer=customer, action="call", outcome="retained", created_at=now - timedelta(hours=12))
    content = ana_client.get(url(customer)).content.decode()
    chart = content[content.index('id="history"'):content.index('id="reasons"')]
    day = lambda value: formatting.day(value)  # noqa: E731
    # Drawn twice: the wide chart and the phone's.
    assert chart.count(f"<title>Order €54 on {day(now - timedelta(days=1))}</title>") == 2
    assert chart.count(f"<title>Alert sent: crossed into high risk on {day(now - timedelta(hours=30))}</title>") == 2
    assert chart.count(f"<title>Call — retained on {day(now - timedelta(hours=12))}</title>") == 2
    assert "€77" not in chart  # a month before the first score: outside the chart
    assert chart.count('class="mark mark-alert"') == 2
    assert "Order (1)</li>" in chart and "Alert (1)</li>" in chart and "Action logged (1)</li>" in chart


def test_customer_page_query_count_does_not_grow_with_history(ana_client, ana, version):
    from crm_plugin.models import Alert

    def grow(customer, n):
        for i in range(n):
            EventFactory(customer=customer, kind=Event.Kind.REVIEW, rating=2, text=f"meh {i}", amount=None)
            InterventionFactory(customer=customer)
            # Orders and alerts inside the score chart's dates: marked on it, in a fixed number of queries.
            EventFactory(customer=customer, kind=Event.Kind.ORDER, occurred_at=timezone.now() - timedelta(hours=i + 1))
            Alert.objects.create(customer=customer, owner=ana, kind="sharp_rise", status="sent",
                                 idempotency_key=f"grow-{customer.pk}-{i}", sent_at=timezone.now() - timedelta(hours=i + 1))
    small = scored_customer(owner=ana, probabilities=[0.4] * 3, version=version)
    large = scored_customer(owner=ana, probabilities=[0.4] * 60, version=version)
    grow(small, 2)
    grow(large, 40)
    ana_client.get(url(small))
    with CaptureQueriesContext(connection) as few:
        ana_client.get(url(small))
    with CaptureQueriesContext(connection) as many:
        ana_client.get(url(large))
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert len(many) <= 14


def test_reasons_with_odd_evidence_shapes_render_as_text(ana_client, ana, version):
    customer = scored_customer(owner=ana, version=version, reasons=[
        {"code": "tickets", "text": "2 open tickets", "weight": 0.2, "evidence": ["refund missing", "wrong size"]},
        {"code": "recency", "text": "No order for 80 days", "weight": "n/a", "evidence": {"days_since_order": 80, "usual_gap": 21}},
        {"code": "broken"},
        "not a reason",
    ])
    content = ana_client.get(url(customer)).content.decode()
    assert "refund missing · wrong size" in content
    # jsonb on PostgreSQL does not keep key order
    assert "days_since_order: 80; usual_gap: 21" in content or "usual_gap: 21; days_since_order: 80" in content
    assert content.count('class="r-text"') == 2


def test_log_a_call_with_its_outcome_in_one_submit(ana_client, ana, customer):
    response = ana_client.post(url(customer), {
        "form": "action", "act-action": "call", "act-note": "Will order again next week", "act-outcome": "retained",
    })
    assert response.status_code == 302
    intervention = Intervention.objects.get(customer=customer)
    assert (intervention.outcome, intervention.outcome_by) == ("retained", ana.user)
    assert intervention.outcome_at is not None
    page = ana_client.get(url(customer)).content.decode()
    log_card = page[page.index('id="log-action"'):page.index('id="interventions"')]
    assert "Logged: Call → Retained for Clara Quinn." in log_card


def test_an_unknown_outcome_is_shown_next_to_the_outcome(ana_client, customer):
    response = ana_client.post(url(customer), {"form": "action", "act-action": "call", "act-outcome": "happy"})
    assert response.status_code == 400
    assert "Unknown outcome &#x27;happy&#x27;" in response.content.decode()
    assert not Intervention.objects.filter(customer=customer).exists()


def test_logging_from_a_worklist_row_returns_to_the_same_list(ana_client, customer):
    back = "/?sort=-risk&page=1"
    response = ana_client.post(url(customer), {"form": "action", "act-action": "email", "next": back})
    assert response["Location"] == back
    assert ana_client.post(url(customer), {"form": "action", "act-action": "email",
                                           "next": "https://evil.example/"})["Location"].startswith(url(customer))


def test_the_page_says_why_there_was_no_alert(ana_client, customer):
    from crm_plugin.models import Customer

    content = ana_client.get(url(customer)).content.decode()
    assert "No new alert: already high risk at the previous score" in content
    Customer.objects.filter(pk=customer.pk).update(lifecycle_stage="lapsed")
    assert "No alert: lapsed, no order for over 90 days" in ana_client.get(url(customer)).content.decode()
    Customer.objects.filter(pk=customer.pk).update(lifecycle_stage="at_risk",
                                                   alerts_snoozed_until=timezone.now() + timedelta(days=3))
    assert "No alert: snoozed until" in ana_client.get(url(customer)).content.decode()


def test_raw_feature_names_and_weights_only_in_the_evidence_detail(ana_client, customer):
    content = ana_client.get(url(customer)).content.decode()
    reasons = content[content.index('id="reasons"'):content.index('id="timeline"')]
    shown, detail = reasons.split('<details class="evidence-detail">')
    assert "days_since_last_order" not in shown and "0.31" not in shown
    assert "days_since_last_order" in detail and "0.31" in detail


def test_reasons_nobody_can_act_on_are_left_out(ana_client, ana, version):
    c = scored_customer(owner=ana, name="Coupons", probabilities=[0.7], version=version, reasons=[
        {"code": "coupons", "text": "0 coupons in the last year, 0 redeemed", "weight": 0.2,
         "evidence": {"coupons_365": 0, "redeemed": 0}},
        {"code": "orders_down", "text": "1 orders in the last 90 days (1 in the last year)", "weight": 0.1,
         "evidence": {"orders_90": 1, "orders_365": 1}},
        {"code": "spend_down", "text": "spend down 40% vs previous 90 days (60.00 vs 100.00)", "weight": 0.1,
         "evidence": {"spend_90": 60.0, "spend_previous_90": 100.0}},
    ])
    content = ana_client.get(url(c)).content.decode()
    shown = content[content.index('<ol class="reasons">'):content.index('<details class="evidence-detail">')]
    assert "coupons" not in shown and "1 orders" not in shown
    assert "Spending down 40% on the previous 90 days (€60 vs €100)" in shown


def test_a_ticket_the_shop_sent_again_closed_shows_closed(ana_client, customer):
    ticket = {"customer_id": "SHOP-77", "kind": "ticket", "occurred_at": (timezone.now() - timedelta(days=2)).isoformat(),
              "text": "refund not processed", "source_id": "T-1", "attributes": {"ticket_id": "T-1"}}
    events_import_records(records=[ticket])
    # No status yet: open, as the model counts it.
    assert '<span class="badge band-high">open</span>' in ana_client.get(url(customer)).content.decode()
    events_import_records(records=[{**ticket, "attributes": {"ticket_id": "T-1", "status": "closed"}}])
    content = ana_client.get(url(customer)).content.decode()
    assert '<span class="badge">closed</span>' in content and '<span class="badge band-high">open</span>' not in content
