"""With the Celery broker down or hung, buttons still save and answer in time; alerts wait for the sweep."""
from __future__ import annotations

import json
import logging
import socket
import time
from contextlib import contextmanager

import pytest

from churnbot.tasks import alerts_queue_pending
from crm_plugin.models import Alert, Intervention, RiskFeedback
from tests.churnbot.test_bolt import closed_port_url
from tests.churnbot.test_delivery import make_alerts
from tests.churnbot.test_interactions import button_value, modal_values

pytestmark = pytest.mark.django_db


@contextmanager
def celery_broker(url: str, monkeypatch):
    """Publish to `url` with a real (not in-process) Celery producer, as the web process does."""
    from config.celery import app

    def forget_connections():
        # The producer pools are built from the broker URL on first use and then kept.
        app._pool = None
        app.amqp._producer_pool = None

    monkeypatch.setenv("CELERY_BROKER_WRITE_URL", url)  # wins over settings, like the real variable would
    forget_connections()
    app.conf.task_always_eager = False
    try:
        yield
    finally:
        app.conf.task_always_eager = True
        monkeypatch.delenv("CELERY_BROKER_WRITE_URL")
        forget_connections()


@pytest.fixture
def broker_down(monkeypatch):
    """Nothing listens on the broker's port: every connection is refused."""
    with celery_broker(closed_port_url().replace("http", "redis").replace("/api/", "/0"), monkeypatch):
        yield


@pytest.fixture
def broker_hung(monkeypatch):
    """The broker accepts connections and never answers (a frozen host, a half-open link)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # the kernel completes the handshakes; nobody ever reads or writes
    port = listener.getsockname()[1]
    try:
        with celery_broker(f"redis://127.0.0.1:{port}/0", monkeypatch):
            yield
    finally:
        listener.close()


def press_snooze(slack, slack_standin, alert, django_capture_on_commit_callbacks):
    [message] = slack_standin.posted("DANA")
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        response = slack.click(user_id="UANA", action_id="snooze_7", value=button_value(message, "snooze_7"),
                               channel="DANA", message_ts=alert.slack_ts)
    return response, time.monotonic() - started


def test_snooze_pressed_while_the_broker_is_down_is_saved_and_answered(
        slack, slack_standin, delivered, broker_down, django_capture_on_commit_callbacks, caplog):
    with caplog.at_level(logging.WARNING, logger="churnbot.enqueue"):
        response, elapsed = press_snooze(slack, slack_standin, delivered, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert elapsed < 3
    assert RiskFeedback.objects.get().kind == "snooze"
    # The DM keeps its buttons (the update could not be queued), and the log says why.
    assert slack_standin.calls_to("chat.update") == []
    assert "broker unavailable, 1 churnbot.alert_message_annotate task(s) not queued" in caplog.text


def test_snooze_pressed_while_the_broker_hangs_is_saved_and_answered_within_three_seconds(
        slack, slack_standin, delivered, broker_hung, django_capture_on_commit_callbacks):
    response, elapsed = press_snooze(slack, slack_standin, delivered, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert elapsed < 3
    assert RiskFeedback.objects.get().kind == "snooze"


def test_a_modal_submitted_while_the_broker_is_down_logs_the_action(
        slack, delivered, broker_down, django_capture_on_commit_callbacks):
    metadata = json.dumps({"customer": delivered.customer_id, "alert": delivered.pk, "channel": "DANA",
                           "ts": delivered.slack_ts, "ephemeral": False, "response_url": None})
    with django_capture_on_commit_callbacks(execute=True):
        response = slack.submit_view(user_id="UANA", callback_id="log_action_modal", private_metadata=metadata,
                                     values=modal_values("call", "Rang, will order again"))
    assert response.status_code == 200
    assert Intervention.objects.get().note == "Rang, will order again"


def test_alerts_stay_pending_while_the_broker_is_down_and_go_out_with_the_next_sweep(
        slack_settings, slack_standin, monkeypatch, django_capture_on_commit_callbacks, caplog):
    alerts = make_alerts(3)
    with celery_broker(closed_port_url().replace("http", "redis").replace("/api/", "/0"), monkeypatch):
        with caplog.at_level(logging.WARNING, logger="churnbot.enqueue"), \
                django_capture_on_commit_callbacks(execute=True):
            assert alerts_queue_pending() == 3
    # One failed publish is enough to know the broker is gone: the other two are not tried.
    assert "broker unavailable, 3 churnbot.deliver_alert task(s) not queued" in caplog.text
    assert set(Alert.objects.filter(pk__in=[a.pk for a in alerts]).values_list("status", flat=True)) == {"pending"}
    assert slack_standin.posted() == []
    # The broker is back: the sweep delivers everything, once.
    with django_capture_on_commit_callbacks(execute=True):
        assert alerts_queue_pending() == 3
    assert len(slack_standin.posted("DANA")) == 3
    assert set(Alert.objects.filter(pk__in=[a.pk for a in alerts]).values_list("status", flat=True)) == {"sent"}
