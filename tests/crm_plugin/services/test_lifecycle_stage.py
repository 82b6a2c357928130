"""Scoring stores each customer's lifecycle stage, and the alert policy agrees with it."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from crm_plugin.models import Alert, Customer
from crm_plugin.scoring import services as ml
from demo.shop import demo_shop_generate


@pytest.mark.slow
def test_scoring_stores_stages_and_risk_alerts_go_only_to_customers_who_have_not_lapsed(db):
    demo_shop_generate(customers=200, days=365, seed=5)
    call_command("run_daily", "--families", "logreg", stdout=StringIO())
    stages = set(Customer.objects.filter(latest_score__isnull=False).values_list("lifecycle_stage", flat=True))
    assert "" not in stages and {"lapsed", "at_risk"} <= stages
    alerted = Customer.objects.filter(alerts__kind__in=["high_risk", "sharp_rise"]).distinct()
    assert alerted.exists()
    assert not alerted.filter(lifecycle_stage="lapsed").exists()
    # At risk means still ordering with a medium or high score.
    at_risk = Customer.objects.filter(lifecycle_stage="at_risk")
    assert not at_risk.filter(latest_score__band="low").exists()
    assert Alert.objects.filter(kind="high_risk", customer__lifecycle_stage="at_risk").exists()
