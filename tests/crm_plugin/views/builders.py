"""Builders shared by the CRM page tests."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from crm_plugin.models import Customer
from tests.crm_plugin.factories import ChurnScoreFactory, CustomerFactory, ModelVersionFactory


def band_for(probability: float) -> str:
    return "high" if probability >= 0.6 else "medium" if probability >= 0.3 else "low"


def scored_customer(*, owner, probabilities=(0.5,), value="1000.00", version=None, reasons=None, **fields) -> Customer:
    """A customer with one score per probability (oldest first, a day apart) and latest_score set."""
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
    Customer.objects.filter(pk=customer.pk).update(latest_score=score)
    customer.refresh_from_db()
    return customer
