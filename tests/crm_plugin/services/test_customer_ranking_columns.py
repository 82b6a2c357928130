"""The worklist's stored ranking columns stay right where their inputs change: scores, the import,
logging and deleting actions, the demo shop, and the migration that fills them in."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from crm_plugin.events.importing import customer_last_order_refresh, events_import_records
from crm_plugin.interventions.services import intervention_create, interventions_delete
from crm_plugin.models import Customer, Event, Intervention
from crm_plugin.scoring.services import customer_latest_score_refresh
from demo.shop import demo_shop_generate
from tests.crm_plugin.factories import (
    AccountOwnerFactory,
    ChurnScoreFactory,
    CustomerFactory,
    EventFactory,
    ModelVersionFactory,
)

pytestmark = pytest.mark.django_db
UTC = dt_timezone.utc


def _order(customer_id: str, when: str, source_id: str, kind: str = "order") -> dict:
    record = {"customer_id": customer_id, "kind": kind, "occurred_at": when, "source_id": source_id}
    return {**record, "amount": 10} if kind == "order" else record


def test_the_import_stores_each_customers_last_order_and_never_moves_it_back():
    events_import_records(records=[
        _order("C1", "2026-03-01T10:00:00Z", "o1"), _order("C1", "2026-03-05T09:00:00Z", "o2"),
        _order("C1", "2026-04-01T00:00:00Z", "v1", kind="visit"),  # a visit is not an order
        _order("C2", "2026-02-01T00:00:00Z", "v2", kind="visit"),
    ])
    stored = dict(Customer.objects.values_list("external_id", "last_order_at"))
    assert stored == {"C1": datetime(2026, 3, 5, 9, tzinfo=UTC), "C2": None}
    # Older history imported later leaves it; a newer order moves it; a re-sent batch changes nothing.
    events_import_records(records=[_order("C1", "2025-12-24T12:00:00Z", "o0"), _order("C2", "2026-05-02T08:30:00Z", "o3")])
    events_import_records(records=[_order("C1", "2026-03-05T09:00:00Z", "o2")])
    stored = dict(Customer.objects.values_list("external_id", "last_order_at"))
    assert stored == {"C1": datetime(2026, 3, 5, 9, tzinfo=UTC), "C2": datetime(2026, 5, 2, 8, 30, tzinfo=UTC)}


def test_last_order_can_be_recomputed_from_stored_events():
    customer = CustomerFactory()
    EventFactory(customer=customer, occurred_at=datetime(2026, 1, 2, tzinfo=UTC))
    EventFactory(customer=customer, occurred_at=datetime(2026, 2, 3, tzinfo=UTC))
    EventFactory(customer=customer, kind=Event.Kind.VISIT, occurred_at=datetime(2026, 3, 4, tzinfo=UTC), amount=None)
    untouched = CustomerFactory()
    assert customer_last_order_refresh(customer_ids=[customer.pk]) == 1
    customer.refresh_from_db()
    untouched.refresh_from_db()
    assert customer.last_order_at == datetime(2026, 2, 3, tzinfo=UTC) and untouched.last_order_at is None


def test_the_demo_shop_stores_every_customers_last_order():
    demo_shop_generate(customers=30, days=120, seed=3, end_date=date(2026, 6, 1))
    expected = dict(Customer.objects.annotate(last=Max("events__occurred_at", filter=Q(events__kind=Event.Kind.ORDER)))
                    .values_list("pk", "last"))
    assert any(expected.values())
    assert dict(Customer.objects.values_list("pk", "last_order_at")) == expected


def test_logging_an_action_stores_when_and_deleting_it_moves_back_to_the_one_before():
    owner = AccountOwnerFactory()
    customer = CustomerFactory(owner=owner)
    first = intervention_create(customer=customer, by=owner.user, action=Intervention.Action.CALL)
    customer.refresh_from_db()
    assert customer.last_action_at == first.created_at
    second = intervention_create(customer=customer, by=owner.user, action=Intervention.Action.EMAIL)
    third = intervention_create(customer=customer, by=owner.user, action=Intervention.Action.COUPON,
                                idempotency_key="form-1")
    customer.refresh_from_db()
    assert customer.last_action_at == third.created_at > first.created_at
    # The same form sent again a minute later is the same action: the stored time stays.
    later = timezone.now() + timedelta(minutes=1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        intervention_create(customer=customer, by=owner.user, action=Intervention.Action.COUPON, idempotency_key="form-1")
    customer.refresh_from_db()
    assert customer.last_action_at == third.created_at
    assert interventions_delete(interventions=Intervention.objects.filter(pk=third.pk)) == 1
    customer.refresh_from_db()
    assert customer.last_action_at == second.created_at
    interventions_delete(interventions=Intervention.objects.filter(customer=customer))
    customer.refresh_from_db()
    assert customer.last_action_at is None


def test_deleting_actions_in_the_admin_moves_each_customers_last_action_back(client):
    staff = get_user_model().objects.create_superuser("root", "root@shop.example", "pw-root-123")
    client.force_login(staff)
    one, two = CustomerFactory(), CustomerFactory()
    old = intervention_create(customer=one, by=staff, action=Intervention.Action.CALL)
    Intervention.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=9))
    newest = intervention_create(customer=one, by=staff, action=Intervention.Action.COUPON)
    only = intervention_create(customer=two, by=staff, action=Intervention.Action.EMAIL)
    # One from its own delete page, the other two with the list's bulk "delete selected".
    response = client.post(reverse("admin:crm_plugin_intervention_delete", args=[newest.pk]), {"post": "yes"})
    assert response.status_code == 302
    one.refresh_from_db()
    assert one.last_action_at == Intervention.objects.get(pk=old.pk).created_at
    response = client.post(reverse("admin:crm_plugin_intervention_changelist"),
                           {"action": "delete_selected", "_selected_action": [old.pk, only.pk], "post": "yes"})
    assert response.status_code == 302 and not Intervention.objects.exists()
    assert list(Customer.objects.filter(pk__in=[one.pk, two.pk]).values_list("last_action_at", flat=True)) == [None, None]


def test_an_order_added_in_the_admin_moves_the_last_order(client):
    staff = get_user_model().objects.create_superuser("root", "root@shop.example", "pw-root-123")
    client.force_login(staff)
    customer = CustomerFactory()
    response = client.post(reverse("admin:crm_plugin_event_add"), {
        "customer": customer.pk, "kind": "order", "occurred_at_0": "2026-04-02", "occurred_at_1": "10:00:00",
        "amount": "12.00", "quantity": "1", "text": "", "attributes": "{}", "source_id": "manual-1"})
    assert response.status_code == 302, response.content.decode()[:2000]
    customer.refresh_from_db()
    assert customer.last_order_at == Event.objects.get(source_id="manual-1").occurred_at


def test_probability_and_value_at_risk_follow_the_latest_score():
    version = ModelVersionFactory()
    customer = CustomerFactory(value=Decimal("1200.00"))
    score = ChurnScoreFactory(customer=customer, model_version=version, probability=0.25, band="low")
    unscored = CustomerFactory(value=Decimal("99.00"))
    Customer.objects.filter(pk=customer.pk).update(latest_score=score)
    assert customer_latest_score_refresh(customer_ids=[customer.pk, unscored.pk]) == 2
    stored = dict(Customer.objects.values_list("pk", "latest_probability"))
    assert stored == {customer.pk: 0.25, unscored.pk: None}
    assert Customer.objects.get(pk=customer.pk).value_at_risk == pytest.approx(300.0)
    assert Customer.objects.get(pk=unscored.pk).value_at_risk is None


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_columns_in_from_existing_rows():
    """Customers stored before the columns existed get them from their scores, orders and actions;
    one scored before stages were stored keeps its place on the at-risk tab."""
    executor = MigrationExecutor(connection)
    before, after = [("crm_plugin", "0012_message_embedding")], [("crm_plugin", "0013_customer_ranking_columns")]
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Old = apps.get_model("crm_plugin", "Customer")
    version = apps.get_model("crm_plugin", "ModelVersion").objects.create(name="v", family="logreg", artifact_path="v")
    scores = apps.get_model("crm_plugin", "ChurnScore").objects
    staged = Old.objects.create(external_id="S", value=Decimal("500"), lifecycle_stage="active")
    legacy = Old.objects.create(external_id="L", value=Decimal("100"))
    bare = Old.objects.create(external_id="B", value=Decimal("100"))
    now = timezone.now().replace(microsecond=0)
    for customer, probability, band in ((staged, 0.2, "low"), (legacy, 0.7, "high")):
        scores.create(customer=customer, model_version=version, as_of=now - timedelta(days=1), probability=0.1, band="low")
        latest = scores.create(customer=customer, model_version=version, as_of=now, probability=probability, band=band)
        Old.objects.filter(pk=customer.pk).update(latest_score=latest)
    events = apps.get_model("crm_plugin", "Event").objects
    for n, (when, kind) in enumerate([(now - timedelta(days=30), "order"), (now - timedelta(days=5), "order"),
                                      (now, "visit")]):
        events.create(customer=staged, kind=kind, occurred_at=when, amount=Decimal("9") if kind == "order" else None,
                      source_id=f"e{n}")
    actions = apps.get_model("crm_plugin", "Intervention").objects
    actions.create(customer=legacy, action="call", created_at=now - timedelta(days=2))
    actions.create(customer=legacy, action="email", created_at=now - timedelta(days=1))
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
        rows = {c.external_id: c for c in Customer.objects.all()}
        assert rows["S"].latest_probability == pytest.approx(0.2) and rows["S"].value_at_risk == pytest.approx(100.0)
        assert rows["S"].last_order_at == now - timedelta(days=5) and rows["S"].last_action_at is None
        assert rows["S"].lifecycle_stage == "active"
        assert rows["L"].value_at_risk == pytest.approx(70.0) and rows["L"].last_action_at == now - timedelta(days=1)
        assert rows["L"].lifecycle_stage == "at_risk" and rows["L"].last_order_at is None
        assert (rows["B"].latest_probability, rows["B"].value_at_risk, rows["B"].lifecycle_stage) == (None, None, "")
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
