"""The Django admin: every model's pages open with data present, search works, lists stay flat in queries."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm_plugin.loop.services import closed_loop_refresh
from crm_plugin.models import (
    Alert,
    BacktestRun,
    ChurnScore,
    Customer,
    EncoderCacheEntry,
    Event,
    Intervention,
    MessageEmbedding,
    ModelVersion,
    RiskFeedback,
    ScoringRun,
)
from demo.shop import demo_shop_generate
from tests.crm_plugin.factories import (
    ChurnScoreFactory,
    CustomerFactory,
    InterventionFactory,
    ModelVersionFactory,
)

pytestmark = pytest.mark.django_db


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:crm_plugin_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("root", "root@shop.example", "pw-root-123")
    client.force_login(user)
    return client, user


@pytest.fixture
def shop():
    """A small demo shop plus one row of every derived model."""
    demo_shop_generate(customers=25, days=60, seed=5, end_date=date(2026, 6, 1))
    customer = Customer.objects.annotate(n=Count("events")).order_by("-n", "pk").first()  # a long history
    version = ModelVersionFactory(name="logreg-2026-06-01", metrics={"pr_auc": 0.41, "roc_auc": 0.78})
    score = ChurnScoreFactory(customer=customer, model_version=version)
    customer.latest_score = score
    customer.save(update_fields=["latest_score"])
    ScoringRun.objects.create(model_version=version, as_of=timezone.now(), status=ScoringRun.Status.DONE,
                              n_customers=25, n_encoded=3, finished_at=timezone.now())
    EncoderCacheEntry.objects.create(model_version=version, customer=customer, text_key="t1:" + "ab" * 8,
                                     embedding=b"\x00" * 16)
    MessageEmbedding.objects.create(model_id="model-0123456789abcdef", sha256="cd" * 32, vector=b"\x00" * 768)
    BacktestRun.objects.create(as_of=timezone.now(), horizon_days=90, n_customers=25, churn_rate=0.27,
                               results={"families": {"logreg": {}, "lightgbm": {}}})
    alert = Alert.objects.create(customer=customer, owner=customer.owner, score=score, kind=Alert.Kind.HIGH_RISK,
                                 status=Alert.Status.FAILED, idempotency_key="high_risk:1", last_error="user_not_found")
    intervention = InterventionFactory(customer=customer, alert=alert, action=Intervention.Action.CALL,
                                       note="Called, will try a coupon")
    RiskFeedback.objects.create(customer=customer, alert=alert, kind=RiskFeedback.Kind.SNOOZE,
                                until=timezone.now() + timedelta(days=7))
    closed_loop_refresh()  # the stored closed loop (LoopSnapshot), as the daily job leaves it
    return {"customer": customer, "version": version, "score": score, "alert": alert, "intervention": intervention}


def test_every_crm_model_is_registered():
    for model in apps.get_app_config("crm_plugin").get_models():
        assert admin.site.is_registered(model), model.__name__


def test_changelist_and_change_page_of_every_model_open_with_data(staff, shop):
    client, _user = staff
    for model in apps.get_app_config("crm_plugin").get_models():
        obj = model.objects.order_by("pk").first()
        assert obj is not None, f"no {model.__name__} row in the fixture"
        response = client.get(_url(model, "changelist"))
        assert response.status_code == 200, model.__name__
        response = client.get(_url(model, "change", obj.pk))
        assert response.status_code == 200, model.__name__
    for model in (Customer, Event):
        assert client.get(_url(model, "add")).status_code == 200
    # Filters and the date drill-down open too.
    assert client.get(_url(Customer, "changelist") + "?segment=vip&latest_score__band=high").status_code == 200
    assert client.get(_url(Event, "changelist") + "?kind=ticket&occurred_at__year=2026").status_code == 200
    assert client.get(_url(Intervention, "changelist") + "?outcome=&action=call").status_code == 200


def test_customer_page_shows_only_recent_history(staff, shop):
    client, _user = staff
    customer = shop["customer"]
    n_events = customer.events.count()
    assert n_events > 10
    response = client.get(_url(Customer, "change", customer.pk))
    page = response.content.decode()
    assert "Latest 10 events" in page and "Latest 10 interventions" in page
    assert page.count('class="field-kind"') == 10
    assert "Called, will try a coupon" in page


def test_search_by_external_id_name_email_and_owner(staff, shop):
    client, _user = staff
    customer = shop["customer"]
    for term in (customer.external_id, customer.email, customer.name.split()[-1]):
        response = client.get(_url(Customer, "changelist"), {"q": term})
        assert customer in response.context["cl"].result_list, term
    response = client.get(_url(Customer, "changelist"), {"q": customer.external_id})
    assert list(response.context["cl"].result_list) == [customer]
    response = client.get(_url(Customer, "changelist"), {"q": "Chloe"})
    owners = {c.owner.user.username for c in response.context["cl"].result_list}
    assert owners == {"chloe"}
    # Big per-customer tables search by exact shop id, email or source id (no table scan).
    response = client.get(_url(Event, "changelist"), {"q": customer.external_id})
    assert {e.customer_id for e in response.context["cl"].result_list} == {customer.pk}
    response = client.get(_url(Event, "changelist"), {"q": customer.email.upper()})
    assert {e.customer_id for e in response.context["cl"].result_list} == {customer.pk}
    event = customer.events.order_by("pk").first()
    response = client.get(_url(Event, "changelist"), {"q": event.source_id})
    assert list(response.context["cl"].result_list) == [event]
    response = client.get(_url(Event, "changelist"), {"q": "no-such-customer"})
    assert list(response.context["cl"].result_list) == []
    response = client.get(_url(ChurnScore, "changelist"), {"q": customer.external_id})
    assert list(response.context["cl"].result_list) == [shop["score"]]
    response = client.get(_url(Alert, "changelist"), {"q": "high_risk:1"})
    assert list(response.context["cl"].result_list) == [shop["alert"]]


def _changelist_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(_url(Customer, "changelist")).status_code == 200
    return len(queries)


def test_customer_changelist_queries_do_not_grow_with_rows(staff):
    client, _user = staff
    version = ModelVersionFactory()

    def add(n):
        for customer in CustomerFactory.create_batch(n):
            customer.latest_score = ChurnScoreFactory(customer=customer, model_version=version)
            customer.save(update_fields=["latest_score"])

    add(3)
    few = _changelist_queries(client)
    add(30)
    many = _changelist_queries(client)
    assert many == few


def test_event_rows_are_view_only(staff, shop):
    client, _user = staff
    event = Event.objects.filter(kind="review").first()
    page = client.get(_url(Event, "change", event.pk)).content.decode()
    assert 'name="text"' not in page and event.text in page
    client.post(_url(Event, "change", event.pk), {"text": "edited", "kind": "review"})
    event.refresh_from_db()
    assert event.text != "edited"
    assert client.get(_url(Event, "delete", event.pk)).status_code == 403


def test_scores_cannot_be_added_changed_or_deleted(staff, shop):
    client, _user = staff
    score = shop["score"]
    assert client.get(_url(ChurnScore, "add")).status_code == 403
    assert client.get(_url(ChurnScore, "delete", score.pk)).status_code == 403
    page = client.get(_url(ChurnScore, "change", score.pk)).content.decode()
    assert 'name="probability"' not in page


def test_record_outcome_action_uses_the_service(staff, shop):
    client, user = staff
    intervention = shop["intervention"]
    response = client.post(_url(Intervention, "changelist"), {
        "action": "record_retained", "_selected_action": [intervention.pk]}, follow=True)
    assert "1 intervention(s) recorded as retained." in response.content.decode()
    intervention.refresh_from_db()
    assert intervention.outcome == Intervention.Outcome.RETAINED
    assert intervention.outcome_by == user and intervention.outcome_at is not None


def test_resend_action_requeues_failed_alerts_and_explains_the_others(staff, shop):
    client, _user = staff
    alert = shop["alert"]
    sent = Alert.objects.create(customer=alert.customer, owner=alert.owner, kind=Alert.Kind.DIGEST,
                                status=Alert.Status.SENT, idempotency_key="digest:1")
    response = client.post(_url(Alert, "changelist"), {
        "action": "resend", "_selected_action": [alert.pk, sent.pk]}, follow=True)
    page = response.content.decode()
    assert "1 alert(s) queued again." in page
    assert "Only failed alerts can be re-sent" in page
    alert.refresh_from_db()
    sent.refresh_from_db()
    assert alert.status == Alert.Status.PENDING and alert.last_error == ""
    assert sent.status == Alert.Status.SENT


def test_promote_action_calls_the_promotion_service(staff, shop, monkeypatch):
    client, user = staff
    calls = []

    def fake_promote(*, version, by):
        calls.append((version.pk, by.pk))
        ModelVersion.objects.filter(pk=version.pk).update(is_champion=True, promoted_by=by)
        return version

    monkeypatch.setattr("crm_plugin.scoring.services.model_version_promote", fake_promote)
    version = shop["version"]
    other = ModelVersionFactory()
    response = client.post(_url(ModelVersion, "changelist"), {
        "action": "promote_to_champion", "_selected_action": [version.pk, other.pk]}, follow=True)
    assert "Pick exactly one version to promote." in response.content.decode()
    assert calls == []
    response = client.post(_url(ModelVersion, "changelist"), {
        "action": "promote_to_champion", "_selected_action": [version.pk]}, follow=True)
    # The admin capitalises the first letter of a message.
    assert f"{version.name.capitalize()} is now the champion." in response.content.decode()
    assert calls == [(version.pk, user.pk)]


def _change_form_data(response) -> dict:
    """The change page's form as the browser would send it back unchanged (main form and inline management forms)."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        widget_value = field.widget.format_value(value) if hasattr(field.widget, "format_value") else value
        if isinstance(widget_value, list):  # split date and time
            for i, part in enumerate(widget_value):
                data[f"{name}_{i}"] = part or ""
        else:
            data[name] = "" if value is None else (form[name].value() if widget_value is None else widget_value)
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management[name].value()
    return data


def test_changing_a_segment_in_the_admin_records_when_it_changed(staff):
    client, _user = staff
    long_ago = timezone.now() - timedelta(days=300)
    customer = CustomerFactory(segment="vip", segment_since=long_ago)
    url = _url(Customer, "change", customer.pk)
    page = client.get(url)
    assert "Segment since" in page.content.decode()  # shown, not editable
    data = _change_form_data(page)
    response = client.post(url, {**data, "name": "Renamed"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    customer.refresh_from_db()
    assert customer.name == "Renamed" and customer.segment_since == long_ago  # the segment did not change
    started = timezone.now()
    client.post(url, {**data, "segment": "lapsed"})
    customer.refresh_from_db()
    assert customer.segment == "lapsed" and customer.segment_since >= started
