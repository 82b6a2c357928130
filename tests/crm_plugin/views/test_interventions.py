"""The interventions page: every action with its outcome, filters, follow-ups due, visibility."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm_plugin import formatting
from tests.crm_plugin.factories import AccountOwnerFactory, InterventionFactory
from tests.crm_plugin.views.builders import scored_customer

pytestmark = pytest.mark.django_db
URL = reverse("crm-interventions")


def notes(response) -> list[str]:
    return [iv.note for iv in response.context["page"].object_list]


@pytest.fixture
def actions(ana, ben, version):
    mine = scored_customer(owner=ana, name="Mine", version=version)
    theirs = scored_customer(owner=ben, name="Theirs", version=version)
    today = timezone.localdate()
    InterventionFactory(customer=mine, action="call", note="call, due", follow_up_on=today - timedelta(days=1),
                        created_at=timezone.now() - timedelta(days=10))
    InterventionFactory(customer=mine, action="email", note="email, retained", outcome="retained",
                        follow_up_on=today - timedelta(days=2), created_at=timezone.now() - timedelta(days=5))
    InterventionFactory(customer=mine, action="coupon", note="coupon, later", follow_up_on=today + timedelta(days=3))
    InterventionFactory(customer=theirs, action="call", note="ben's call", follow_up_on=today)


def test_owner_sees_only_actions_on_own_customers(ana_client, actions):
    response = ana_client.get(URL)
    assert notes(response) == ["coupon, later", "email, retained", "call, due"]
    content = response.content.decode()
    assert 'class="badge outcome-retained">Retained' in content
    assert "Record outcome" in content


def test_manager_sees_all_and_filters_by_owner(client, maria, ben, actions):
    client.force_login(maria.user)
    assert len(notes(client.get(URL))) == 4
    assert notes(client.get(URL, {"owner": ben.pk})) == ["ben's call"]


def test_filters_by_action_outcome_and_date(ana_client, actions):
    assert notes(ana_client.get(URL, {"action": "email"})) == ["email, retained"]
    assert notes(ana_client.get(URL, {"outcome": "pending"})) == ["coupon, later", "call, due"]
    assert notes(ana_client.get(URL, {"outcome": "retained"})) == ["email, retained"]
    since = (timezone.localdate() - timedelta(days=6)).isoformat()
    assert notes(ana_client.get(URL, {"date_from": since})) == ["coupon, later", "email, retained"]
    until = (timezone.localdate() - timedelta(days=6)).isoformat()
    assert notes(ana_client.get(URL, {"date_to": until})) == ["call, due"]


def _from_field(content: str) -> str:
    """The filter's "From" field: its label, its input and whatever is said under it."""
    start = content.index('<label for="id_date_from">')
    return content[start:content.index('<label for="id_date_to">')]


def test_bad_date_is_explained_next_to_the_field(ana_client, actions):
    response = ana_client.get(URL, {"date_from": "not-a-date"})
    field = _from_field(response.content.decode())
    assert 'aria-invalid="true"' in field
    assert '<p class="field-error" id="id_date_from_error" role="alert">Enter a valid date.</p>' in field


def test_from_after_to_is_an_error_next_to_from_not_an_empty_list(ana_client, actions):
    today = timezone.localdate()
    response = ana_client.get(URL, {"date_from": today.isoformat(), "date_to": (today - timedelta(days=7)).isoformat()})
    assert response.status_code == 200
    content = response.content.decode()
    until = formatting.day(today - timedelta(days=7))
    assert f"After “To” ({until}): pick a date on or before it." in _from_field(content)
    assert "0 actions" not in content and "No actions match" not in content
    assert response.context["page"] is None
    assert "the filter below needs fixing" in content
    # The same dates the right way round are a filter like any other.
    fixed = ana_client.get(URL, {"date_from": (today - timedelta(days=7)).isoformat(), "date_to": today.isoformat()})
    assert notes(fixed) == ["coupon, later", "email, retained"]


def test_follow_ups_due_lists_pending_follow_ups_up_to_today(ana_client, client, maria, actions):
    response = ana_client.get(URL, {"view": "due"})
    assert notes(response) == ["call, due"]
    assert response.context["due_count"] == 1
    client.force_login(maria.user)
    assert notes(client.get(URL, {"view": "due"})) == ["call, due", "ben's call"]


def test_query_count_does_not_grow_with_rows(client, maria, version):
    client.force_login(maria.user)

    def add(n):
        owner = AccountOwnerFactory()
        for _ in range(n):
            InterventionFactory(customer=scored_customer(owner=owner, version=version))

    add(5)
    client.get(URL)
    with CaptureQueriesContext(connection) as few:
        client.get(URL)
    add(45)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(URL).context["page"].object_list) == 50
    assert len(many) == len(few)
