"""Logging a retention action and its outcome, and the errors bad input gets."""
from datetime import timedelta

import pytest
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import Intervention
from crm_plugin.interventions.services import intervention_create, intervention_record_outcome
from tests.crm_plugin.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_creates_intervention_with_follow_up():
    customer, user = CustomerFactory(), UserFactory()
    follow_up = timezone.localdate() + timedelta(days=7)
    intervention = intervention_create(customer=customer, by=user, action="coupon", note=" 10% off ", follow_up_on=follow_up)
    assert intervention.action == Intervention.Action.COUPON
    assert intervention.note == "10% off"
    assert intervention.follow_up_on == follow_up
    assert intervention.outcome == ""


def test_unknown_action_is_refused_with_the_choices():
    with pytest.raises(CrmError, match="Unknown action 'fax'; choose one of: call, email"):
        intervention_create(customer=CustomerFactory(), by=None, action="fax")
    assert Intervention.objects.count() == 0


def test_follow_up_in_the_past_is_refused():
    with pytest.raises(CrmError, match="in the past"):
        intervention_create(customer=CustomerFactory(), by=None, action="call",
                            follow_up_on=timezone.localdate() - timedelta(days=1))


def test_record_outcome():
    user = UserFactory()
    intervention = intervention_create(customer=CustomerFactory(), by=user, action="call")
    updated = intervention_record_outcome(intervention=intervention, by=user, outcome="retained", note="ordered again")
    assert updated.outcome == "retained"
    assert updated.outcome_at is not None
    with pytest.raises(CrmError, match="Unknown outcome"):
        intervention_record_outcome(intervention=intervention, by=user, outcome="maybe")
