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


def test_the_same_idempotency_key_returns_the_first_action_unchanged():
    customer, user = CustomerFactory(), UserFactory()
    first = intervention_create(customer=customer, by=user, action="call", note="rang", idempotency_key="slack:V1")
    again = intervention_create(customer=customer, by=user, action="email", note="other", idempotency_key="slack:V1")
    assert again.pk == first.pk
    assert (again.action, again.note) == ("call", "rang")
    assert Intervention.objects.count() == 1
    # Without a key every call is a new action.
    intervention_create(customer=customer, by=user, action="call")
    intervention_create(customer=customer, by=user, action="call")
    assert Intervention.objects.count() == 3


def test_a_key_already_used_for_another_customer_is_refused():
    intervention_create(customer=CustomerFactory(), by=None, action="call", idempotency_key="slack:V1")
    with pytest.raises(CrmError, match="already used for another customer"):
        intervention_create(customer=CustomerFactory(), by=None, action="call", idempotency_key="slack:V1")
    assert Intervention.objects.count() == 1


def test_a_twin_that_inserts_the_key_first_is_returned(monkeypatch):
    """The race: both requests looked the key up before either inserted; the loser gets the winner's row."""
    from crm_plugin.interventions import services as interventions
    customer = CustomerFactory()
    winner = intervention_create(customer=customer, by=None, action="call", idempotency_key="slack:V1")
    # The loser's first look found nothing (the winner had not committed yet); later looks are real.
    monkeypatch.setattr(interventions, "_intervention_for_key", _first_then(None, interventions._intervention_for_key))
    loser = intervention_create(customer=customer, by=None, action="call", idempotency_key="slack:V1")
    assert loser.pk == winner.pk
    assert Intervention.objects.count() == 1  # and the surrounding transaction is still usable


def _first_then(first, then):
    calls = []

    def lookup(**kwargs):
        calls.append(kwargs)
        return first if len(calls) == 1 else then(**kwargs)

    return lookup


@pytest.mark.django_db(transaction=True)
def test_concurrent_submissions_with_one_key_create_one_action(require_postgres):
    """Two requests at once, each in its own transaction, as two web workers would run them."""
    import threading

    from django.db import connection

    customer = CustomerFactory()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def submit():
        try:
            barrier.wait(timeout=10)
            results.append(intervention_create(customer=customer, by=None, action="call", idempotency_key="slack:V1").pk)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 2
    assert Intervention.objects.count() == 1


def test_recording_the_same_outcome_twice_keeps_the_first_record():
    first_user, second_user = UserFactory(), UserFactory()
    intervention = intervention_create(customer=CustomerFactory(), by=first_user, action="call")
    recorded = intervention_record_outcome(intervention=intervention, by=first_user, outcome="still_working")
    again = intervention_record_outcome(intervention=intervention, by=second_user, outcome="still_working")
    assert (again.outcome_at, again.outcome_by) == (recorded.outcome_at, first_user)
    # A different outcome later replaces it: "still working" became "retained".
    final = intervention_record_outcome(intervention=intervention, by=second_user, outcome="retained")
    assert (final.outcome, final.outcome_by) == ("retained", second_user)
    assert final.outcome_at >= recorded.outcome_at
