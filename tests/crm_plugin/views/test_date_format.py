"""One date format on every CRM page: "3 Nov 2026" (crm_plugin.formatting.day), tooltips and facts included."""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone as tz
from decimal import Decimal

import pytest
from django.urls import reverse

from crm_plugin.models import Alert, BacktestRun
from tests.crm_plugin.factories import EventFactory, InterventionFactory, ModelVersionFactory
from tests.crm_plugin.views.builders import scored_customer

pytestmark = pytest.mark.django_db

MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
THE_FORMAT = re.compile(rf"\b\d{{1,2}} (?:{MONTHS}) \d{{4}}\b")
# Every other way a date could reach a person: ISO, Django's default "Nov. 3, 2026", US and
# European numerals, full month names, a month before the day.
OTHER_FORMATS = [
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    re.compile(rf"\b(?:{MONTHS})\.? \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}\b"),
    re.compile(r"\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b"),
    re.compile(r"\b\d{1,2} (?:January|February|March|April|June|July|August|September|October|November|December)\b"),
    re.compile(r"\b(?:Sept|Nov|Dec|Jan|Feb|Aug|Oct)\. \d"),
]
WHEN = datetime(2026, 11, 3, 10, 0, tzinfo=tz.utc)


def shown_text(content: str) -> str:
    """What a person reads: text and tooltips (<title>), without markup, attributes or commands in <code>."""
    content = re.sub(r"<code>.*?</code>", " ", content, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", content))


def assert_one_format(content: str, *expected: str) -> None:
    text = shown_text(content)
    for other in OTHER_FORMATS:
        found = other.findall(text)
        assert not found, f"dates in another format: {found}"
    for day in expected:
        assert day in text, day
    assert all(THE_FORMAT.fullmatch(d) for d in expected)


@pytest.fixture
def history(ana, version):
    customer = scored_customer(owner=ana, name="Clara Quinn", probabilities=[0.4, 0.7], version=version, reasons=[
        {"code": "no_recent_order", "text": "no order for 64 days (usually every 20)", "weight": 0.31,
         "evidence": {"days_since_last_order": 64, "usual_gap_days": 20, "last_order": "2026-09-28"}},
    ])
    EventFactory(customer=customer, occurred_at=WHEN, amount=Decimal("54.00"))
    Alert.objects.create(customer=customer, owner=ana, kind="high_risk", status="sent", idempotency_key="k",
                         created_at=WHEN, sent_at=WHEN)
    InterventionFactory(customer=customer, action="call", created_at=WHEN, follow_up_on=WHEN.date() + timedelta(days=4),
                        created_by=ana.user)
    return customer


def test_worklist_dates(ana_client, history):
    assert_one_format(ana_client.get(reverse("crm-worklist")).content.decode(), "3 Nov 2026")


def test_customer_page_dates_including_chart_tooltips_and_facts(ana_client, history):
    content = ana_client.get(reverse("crm-customer", args=[history.pk])).content.decode()
    assert_one_format(content, "3 Nov 2026", "7 Nov 2026", "28 Sep 2026")  # order, follow-up, a fact in the evidence
    assert "last_order: 28 Sep 2026" in content
    assert re.search(r"<title>\d{1,2} \w{3} \d{4}: 70%</title>", content)  # a score point's tooltip


def test_interventions_dates(ana_client, history):
    content = ana_client.get(reverse("crm-interventions")).content.decode()
    assert_one_format(content, "3 Nov 2026", "7 Nov 2026")
    due = ana_client.get(reverse("crm-interventions"), {"view": "due"}).content.decode()
    assert_one_format(due)
    assert re.search(rf"with a follow-up due by {THE_FORMAT.pattern} and no outcome yet", shown_text(due))


def test_model_report_dates(client, admin_user, history):
    ModelVersionFactory(name="bert-x", is_champion=False, created_at=WHEN, trained_as_of=WHEN - timedelta(days=1),
                        promoted_at=WHEN + timedelta(days=1))
    BacktestRun.objects.create(as_of=datetime(2026, 8, 6, tzinfo=tz.utc), horizon_days=90, n_customers=10,
                               churn_rate=0.3, results={}, created_at=WHEN)
    client.force_login(admin_user)
    content = client.get(reverse("crm-models")).content.decode()
    assert_one_format(content, "3 Nov 2026", "2 Nov 2026", "4 Nov 2026", "6 Aug 2026")
    version = ModelVersionFactory(name="challenger", trained_as_of=WHEN)
    assert_one_format(client.get(reverse("crm-model-promote", args=[version.pk])).content.decode(), "3 Nov 2026")
