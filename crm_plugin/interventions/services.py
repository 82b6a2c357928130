"""Retention actions and their outcomes: the one path used by Slack, the CRM views and the API."""
from __future__ import annotations

from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import Alert, Customer, Intervention

NOTE_MAX = 4000


@transaction.atomic
def intervention_create(
    *,
    customer: Customer,
    by: AbstractBaseUser | None,
    action: str,
    note: str = "",
    follow_up_on: date | None = None,
    alert: Alert | None = None,
    source: str = Intervention.Source.CRM,
    idempotency_key: str | None = None,
    outcome: str = "",
    outcome_note: str = "",
) -> Intervention:
    """Log a retention action taken on a customer, with its outcome when it is already known
    (a call that ended with "they'll stay": one submit, not a second form).

    With `idempotency_key`, the same key returns the row it created the first time, unchanged,
    also when two requests race (for a caller that may send one action twice: a re-sent form).
    """
    if idempotency_key:
        existing = _intervention_for_key(key=idempotency_key, customer=customer)
        if existing is not None:
            return existing
    if action not in Intervention.Action.values:
        choices = ", ".join(Intervention.Action.values)
        raise CrmError(f"Unknown action {action!r}; choose one of: {choices}.", code="invalid_action")
    if len(note) > NOTE_MAX:
        raise CrmError(f"The note is {len(note)} characters; keep it under {NOTE_MAX}.", code="note_too_long")
    if follow_up_on is not None and follow_up_on < timezone.localdate():
        raise CrmError("The follow-up date is in the past.", code="follow_up_in_past")
    if alert is not None and alert.customer_id != customer.pk:
        raise CrmError("That alert is about a different customer.", code="alert_mismatch")
    valid_outcomes = [value for value in Intervention.Outcome.values if value]
    if outcome and outcome not in valid_outcomes:
        raise CrmError(f"Unknown outcome {outcome!r}; choose one of: {', '.join(valid_outcomes)}.",
                       code="invalid_outcome")
    if len(outcome_note) > NOTE_MAX:
        raise CrmError(f"The note is {len(outcome_note)} characters; keep it under {NOTE_MAX}.", code="note_too_long")
    known = {"outcome": outcome, "outcome_note": outcome_note.strip(), "outcome_at": timezone.now(),
             "outcome_by": by} if outcome else {}
    try:
        # A savepoint: when a concurrent request inserted the same key first, only this insert is undone.
        with transaction.atomic():
            intervention = Intervention.objects.create(
                customer=customer, alert=alert, action=action, note=note.strip(), created_by=by,
                follow_up_on=follow_up_on, source=source, idempotency_key=idempotency_key or None, **known,
            )
    except IntegrityError:
        existing = _intervention_for_key(key=idempotency_key, customer=customer) if idempotency_key else None
        if existing is None:
            raise
        return existing
    # Stored for the worklist's "last action" sort; only ever forward (two actions logged at once).
    (Customer.objects.filter(pk=customer.pk)
     .filter(Q(last_action_at__isnull=True) | Q(last_action_at__lt=intervention.created_at))
     .update(last_action_at=intervention.created_at))
    return intervention


@transaction.atomic
def interventions_delete(*, interventions: QuerySet[Intervention]) -> int:
    """Delete actions (a wrong entry, removed by staff in the admin) and move each customer's stored last
    action back to the latest one left. Returns the number of actions deleted."""
    customer_ids = list(interventions.values_list("customer_id", flat=True).distinct())
    deleted, _ = interventions.delete()
    customer_last_action_refresh(customer_ids=customer_ids)
    return deleted


def customer_last_action_refresh(*, customer_ids: list[int] | None = None) -> int:
    """Store `Customer.last_action_at` from the logged actions of these customers (all when None), in one
    UPDATE; empty for a customer with none. Returns the number of customers updated."""
    last = (Intervention.objects.filter(customer_id=OuterRef("pk")).order_by("-created_at")
            .values("created_at")[:1])
    qs = Customer.objects.all() if customer_ids is None else Customer.objects.filter(pk__any_of=customer_ids)
    return qs.update(last_action_at=Subquery(last))


def _intervention_for_key(*, key: str, customer: Customer) -> Intervention | None:
    existing = Intervention.objects.filter(idempotency_key=key).first()
    if existing is not None and existing.customer_id != customer.pk:
        raise CrmError("That request was already used for another customer.", code="idempotency_conflict")
    return existing


@transaction.atomic
def intervention_record_outcome(
    *, intervention: Intervention, by: AbstractBaseUser | None, outcome: str, note: str = ""
) -> Intervention:
    """Record what came of an action. Retained/churned outcomes become training labels.

    Recording the outcome the action already has (a button pressed twice, a re-sent request)
    changes nothing, so who recorded it and when stay those of the first time; a different
    outcome replaces it ("still working" becomes "retained").
    """
    valid = [value for value in Intervention.Outcome.values if value]
    if outcome not in valid:
        raise CrmError(f"Unknown outcome {outcome!r}; choose one of: {', '.join(valid)}.", code="invalid_outcome")
    if len(note) > NOTE_MAX:
        raise CrmError(f"The note is {len(note)} characters; keep it under {NOTE_MAX}.", code="note_too_long")
    intervention = Intervention.objects.select_for_update().get(pk=intervention.pk)
    if intervention.outcome == outcome and note.strip() in ("", intervention.outcome_note):
        return intervention
    intervention.outcome = outcome
    intervention.outcome_note = note.strip()
    intervention.outcome_at = timezone.now()
    intervention.outcome_by = by
    intervention.save(update_fields=["outcome", "outcome_note", "outcome_at", "outcome_by"])
    return intervention
