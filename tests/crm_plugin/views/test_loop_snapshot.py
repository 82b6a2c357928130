"""The closed loop is computed ahead (daily job, refresh task) and pages and Slack only read it."""
from __future__ import annotations

import pytest
from django.urls import reverse

from churnbot.queries import customer_card_data
from crm_plugin.errors import CrmError
from crm_plugin.loop import report as loop_report_module
from crm_plugin.loop import tasks as loop_tasks
from crm_plugin.loop.report import closed_loop_report, loop_data_fingerprint
from crm_plugin.loop.services import closed_loop_refresh, loop_snapshot_contents
from crm_plugin.models import LoopSnapshot
from tests.crm_plugin.views.builders import alerted_group, scored_customer
from tests.crm_plugin.views.test_closed_loop_views import _loop_settings, loop, section, text_of  # noqa: F401

REPORT = reverse("crm-models")
IMPACT = reverse("crm-impact")


def _no_fitting(monkeypatch):
    """Fail loudly if anything reads the episodes or fits the model from here on."""
    def refuse(*args, **kwargs):
        raise AssertionError("the closed loop was computed inside the request")

    monkeypatch.setattr(loop_report_module, "alert_episodes", refuse)
    monkeypatch.setattr(loop_report_module, "closed_loop_compute", refuse)
    monkeypatch.setattr("crm_plugin.loop.services.closed_loop_compute", refuse)
    monkeypatch.setattr("crm_plugin.loop.selectors.profit_threshold_build", refuse)  # reads every latest score


def test_the_refresh_stores_the_report_and_a_model_that_suggests_the_same(loop, ana, version):
    snapshot = closed_loop_refresh()
    assert snapshot.fingerprint == loop_data_fingerprint()
    assert snapshot.report == closed_loop_report(as_of=snapshot.as_of)
    customer = scored_customer(owner=ana, probabilities=[0.85], segment="regular", value="500.00", version=version)
    model = loop_snapshot_contents(snapshot=LoopSnapshot.objects.get(pk=snapshot.pk)).model
    fitted = loop_report_module.next_best_action_model(as_of=snapshot.as_of)
    assert model.recommend_many(loop_report_module._customer_rows([customer])) == \
        fitted.recommend_many(loop_report_module._customer_rows([customer]))


def test_report_customer_page_and_slack_read_the_stored_loop_without_fitting(client, maria, ana, loop, version, monkeypatch):
    customer = scored_customer(owner=ana, probabilities=[0.82], segment="regular", value="500.00", version=version)
    closed_loop_refresh()  # what the daily job does after the alert policy
    _no_fitting(monkeypatch)
    client.force_login(maria.user)
    assert "coupon 20.0% of 50" in text_of(section(client.get(IMPACT).content.decode(), "lift"))
    report = client.get(REPORT).content.decode()
    assert "latest score of 1 customer." in text_of(section(report, "threshold"))
    client.force_login(ana.user)
    page = client.get(reverse("crm-customer", args=[customer.pk])).content.decode()
    assert "Suggested next step Coupon" in text_of(section(page, "next-action"))
    assert customer_card_data(customer=customer).next_best_action["action"] == "coupon"


def test_with_a_broker_a_stale_loop_is_served_and_a_refresh_queued_once(client, maria, ana, loop, version, monkeypatch):
    closed_loop_refresh()
    queued = []
    monkeypatch.setattr(loop_tasks.loop_refresh, "apply_async", lambda **kwargs: queued.append(kwargs))
    # An outcome recorded since: the stored loop is stale, a worker would refresh it.
    from crm_plugin.models import Intervention

    for intervention in Intervention.objects.filter(outcome="retained").order_by("pk")[:2]:
        intervention.outcome = "churned"
        intervention.save()
    _no_fitting(monkeypatch)
    client.force_login(maria.user)
    for _ in range(2):
        assert "coupon 20.0% of 50" in text_of(section(client.get(IMPACT).content.decode(), "lift"))
    assert len(queued) == 1


def test_with_the_broker_down_the_stored_loop_is_still_served(client, maria, loop, monkeypatch):
    from kombu.exceptions import OperationalError

    from crm_plugin.models import Intervention

    closed_loop_refresh()

    def broker_down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(loop_tasks.loop_refresh, "apply_async", broker_down)
    Intervention.objects.filter(outcome="retained").order_by("pk").first().delete()  # the data changed
    _no_fitting(monkeypatch)
    client.force_login(maria.user)
    response = client.get(IMPACT)
    assert response.status_code == 200 and "coupon 20.0% of 50" in text_of(section(response.content.decode(), "lift"))


def test_the_refresh_task_catches_up_and_skips_a_second_ask(loop):
    from django.utils import timezone

    asked = timezone.now().isoformat()
    first = loop_tasks.loop_refresh.delay(asked_at=asked).get()
    assert loop_tasks.loop_refresh.delay(asked_at=asked).get() == first
    assert LoopSnapshot.objects.count() == 1


def test_a_snapshot_that_fails_its_signature_is_not_unpickled(loop):
    snapshot = closed_loop_refresh()
    LoopSnapshot.objects.filter(pk=snapshot.pk).update(model=b"\x80\x04K\x01.")
    with pytest.raises(CrmError, match="fails its signature"):
        loop_snapshot_contents(snapshot=LoopSnapshot.objects.get(pk=snapshot.pk))


def test_only_the_newest_snapshots_are_kept(ana, version):
    alerted_group(owner=ana, segment="regular", n=5, churned=1, control=True, action=None, prefix="S", version=version)
    ids = [closed_loop_refresh().pk for _ in range(5)]
    assert list(LoopSnapshot.objects.order_by("pk").values_list("pk", flat=True)) == ids[-3:]
