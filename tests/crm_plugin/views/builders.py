"""Builders shared by the CRM page tests."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from crm_plugin.models import Customer
from crm_plugin.scoring.services import customer_latest_score_refresh, customer_risk_change_refresh
from tests.crm_plugin.factories import ChurnScoreFactory, CustomerFactory, ModelVersionFactory


def band_for(probability: float) -> str:
    return "high" if probability >= 0.6 else "medium" if probability >= 0.3 else "low"


def scored_customer(*, owner, probabilities=(0.5,), value="1000.00", version=None, reasons=None, stage=None,
                    **fields) -> Customer:
    """A customer with one score per probability (oldest first, a day apart) and latest_score set.

    The lifecycle stage is what scoring would store for a customer still ordering (at risk for a
    medium or high score, active otherwise) unless `stage` says otherwise."""
    customer = CustomerFactory(owner=owner, value=Decimal(value), **fields)
    version = version or ModelVersionFactory()
    now = timezone.now()
    score = None
    for index, probability in enumerate(probabilities):
        extra = {"reasons": reasons} if reasons is not None else {}
        score = ChurnScoreFactory(
            customer=customer, model_version=version, probability=probability, band=band_for(probability),
            as_of=now - timedelta(days=len(probabilities) - 1 - index), **extra,
        )
    if stage is None:
        stage = "at_risk" if probabilities and probabilities[-1] >= 0.3 else "active"
    Customer.objects.filter(pk=customer.pk).update(latest_score=score, lifecycle_stage=stage)
    # What scoring stores with latest_score: probability, value at risk and the 7-day change.
    customer_latest_score_refresh(customer_ids=[customer.pk])
    customer_risk_change_refresh(customer_ids=[customer.pk])
    customer.refresh_from_db()
    return customer


def alerted_group(*, owner, segment: str, n: int, churned: int, control: bool, action: str | None, prefix: str,
                  alerted_days_ago: int = 40, recorded: bool = False, version=None) -> list[Customer]:
    """n customers with a high-risk alert `alerted_days_ago` days ago (held out when `control`); the
    first `churned` of them never order again, the rest order 10 days after the alert. With `action`
    each got that action the day after the alert (outcome recorded when `recorded`)."""
    from crm_plugin.models import Alert, ChurnScore, Event, Intervention

    version = version or ModelVersionFactory()
    alerted = timezone.now().replace(microsecond=0) - timedelta(days=alerted_days_ago)
    customers = Customer.objects.bulk_create([
        Customer(external_id=f"{prefix}{i:04d}", name=f"{prefix} {i}", owner=owner, segment=segment, value=Decimal("500"))
        for i in range(n)
    ])
    scores = ChurnScore.objects.bulk_create([
        ChurnScore(customer=c, model_version=version, as_of=alerted, probability=0.8, band="high") for c in customers
    ])
    Alert.objects.bulk_create([
        Alert(customer=c, owner=owner, score=s, kind="high_risk", status="held_out" if control else "sent",
              is_control=control, idempotency_key=f"risk:{c.pk}:{s.pk}")
        for c, s in zip(customers, scores)
    ])
    events, actions = [], []
    for i, c in enumerate(customers):
        gone = i < churned
        if not gone:
            events.append(Event(customer=c, kind="order", occurred_at=alerted + timedelta(days=10),
                                amount=Decimal("30"), source_id=f"o-{c.external_id}"))
        if action:
            actions.append(Intervention(
                customer=c, action=action, created_at=alerted + timedelta(days=1), source="crm",
                outcome=("churned" if gone else "retained") if recorded else "",
                outcome_at=alerted + timedelta(days=30) if recorded else None,
            ))
    Event.objects.bulk_create(events)
    Intervention.objects.bulk_create(actions)
    return customers
