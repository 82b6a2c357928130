"""Buttons and modals: Log action -> modal -> Intervention, snooze, not a risk, follow-up -> outcome."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from churnbot.delivery import alert_deliver
from churnbot.tasks import follow_ups_send
from crm_plugin.web.forms import InterventionForm
from crm_plugin.models import Alert, Intervention, RiskFeedback
from crm_plugin.alerts.policy import alert_policy_apply
from tests.churnbot.block_kit import modal_problems
from tests.churnbot.test_delivery import make_alerts
from tests.crm_plugin.factories import AccountOwnerFactory, CustomerFactory, InterventionFactory

pytestmark = pytest.mark.django_db


def button_value(message: dict, action_id: str) -> str:
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    return next(e["value"] for e in actions["elements"] if e["action_id"] == action_id)


def modal_values(action: str, note: str = "", follow_up: str | None = None, outcome: str | None = None) -> dict:
    return {
        "action": {"value": {"type": "static_select", "selected_option": {"value": action}}},
        "note": {"value": {"type": "plain_text_input", "value": note}},
        "outcome": {"value": {"type": "static_select",
                              "selected_option": {"value": outcome} if outcome is not None else None}},
        "follow_up": {"value": {"type": "datepicker", "selected_date": follow_up}},
    }


def test_log_action_button_modal_submission_creates_an_intervention_and_updates_the_dm(
        slack, slack_standin, delivered, django_capture_on_commit_callbacks):
    [message] = slack_standin.posted("DANA")
    response = slack.click(user_id="UANA", action_id="log_action", value=button_value(message, "log_action"),
                           channel="DANA", message_ts=delivered.slack_ts)
    assert response.status_code == 200
    [opened] = slack_standin.calls_to("views.open")
    assert opened.arg("trigger_id") == "trigger-1"
    view = opened.arg("view")
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "log_action_modal"
    options = [o["value"] for o in view["blocks"][1]["element"]["options"]]
    assert options == ["call", "email", "coupon", "recommendation", "escalation", "other"]
    assert modal_problems(view) == []

    follow_up = (timezone.localdate() + timedelta(days=14)).isoformat()
    with django_capture_on_commit_callbacks(execute=True):
        response = slack.submit_view(user_id="UANA", callback_id=view["callback_id"],
                                     private_metadata=view["private_metadata"],
                                     values=modal_values("call", "Offered free shipping", follow_up))
    assert response.status_code == 200 and response.content in (b"", b"{}")
    intervention = Intervention.objects.get()
    assert (intervention.customer, intervention.alert, intervention.action, intervention.source) == (
        delivered.customer, delivered, "call", "slack")
    assert intervention.note == "Offered free shipping"
    assert intervention.follow_up_on.isoformat() == follow_up
    assert intervention.created_by == delivered.owner.user
    [update] = slack_standin.calls_to("chat.update")
    assert (update.arg("channel"), update.arg("ts")) == ("DANA", delivered.slack_ts)
    assert "Logged: call by <@UANA>" in json.dumps(slack_standin.posted("DANA")[0]["blocks"])
    assert not any(b["type"] == "actions" for b in slack_standin.posted("DANA")[0]["blocks"])


def test_modal_with_a_past_follow_up_date_shows_the_error_in_the_modal(slack, slack_standin, delivered):
    metadata = json.dumps({"customer": delivered.customer_id, "alert": delivered.pk, "channel": "DANA",
                           "ts": delivered.slack_ts, "ephemeral": False, "response_url": None})
    response = slack.submit_view(user_id="UANA", callback_id="log_action_modal", private_metadata=metadata,
                                 values=modal_values("email", "", (timezone.localdate() - timedelta(days=1)).isoformat()))
    body = response.json()
    assert body == {"response_action": "errors", "errors": {"follow_up": "The follow-up date is in the past."}}
    assert not Intervention.objects.exists()


def test_snooze_button_records_feedback_updates_the_dm_and_silences_the_policy(
        slack, slack_standin, delivered, django_capture_on_commit_callbacks):
    [message] = slack_standin.posted("DANA")
    with django_capture_on_commit_callbacks(execute=True):
        slack.click(user_id="UANA", action_id="snooze_7", value=button_value(message, "snooze_7"),
                    channel="DANA", message_ts=delivered.slack_ts)
    feedback = RiskFeedback.objects.get()
    assert (feedback.kind, feedback.alert, feedback.customer) == ("snooze", delivered, delivered.customer)
    customer = delivered.customer
    customer.refresh_from_db()
    assert timedelta(days=6, hours=23) < customer.alerts_snoozed_until - timezone.now() <= timedelta(days=7)
    assert "Alerts snoozed for 7 days by <@UANA>" in json.dumps(slack_standin.posted("DANA")[0]["blocks"])
    # The next scoring run leaves the customer alone.
    from tests.crm_plugin.factories import ChurnScoreFactory
    later = timezone.now() + timedelta(days=2)
    ChurnScoreFactory(customer=customer, probability=0.99, band="high", as_of=later)
    assert alert_policy_apply(as_of=later).skipped_snoozed == 1


@pytest.mark.parametrize("days,said", [(90, "for 90 days"), (30, "for 30 days"), (1, "for 1 day")])
def test_not_a_risk_asks_first_and_names_the_time_the_press_then_silences(
        slack, slack_standin, slack_settings, django_capture_on_commit_callbacks, days, said):
    slack_settings.ALERT_NOT_A_RISK_DAYS = days
    [alert] = make_alerts()
    alert_deliver(alert_id=alert.pk)
    [message] = slack_standin.posted("DANA")
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    button = next(e for e in actions["elements"] if e["action_id"] == "not_a_risk")
    confirm = button["confirm"]
    assert confirm["title"]["text"] == "Mark as not a risk?"
    assert confirm["text"]["text"].startswith(f"No churn alerts about {alert.customer.name} {said}.")
    assert (confirm["confirm"]["text"], confirm["deny"]["text"], confirm["style"]) == ("Not a risk", "Cancel", "danger")
    # Only the destructive button asks.
    assert [e["action_id"] for e in actions["elements"] if "confirm" in e] == ["not_a_risk"]
    with django_capture_on_commit_callbacks(execute=True):
        slack.click(user_id="UANA", action_id="not_a_risk", value=button["value"], channel="DANA",
                    message_ts=message["ts"])
    alert.customer.refresh_from_db()
    silenced = alert.customer.not_a_risk_until - timezone.now()
    assert timedelta(days=days) - timedelta(minutes=5) < silenced <= timedelta(days=days)


def test_not_a_risk_button(slack, slack_standin, delivered, django_capture_on_commit_callbacks):
    [message] = slack_standin.posted("DANA")
    with django_capture_on_commit_callbacks(execute=True):
        slack.click(user_id="UANA", action_id="not_a_risk", value=button_value(message, "not_a_risk"),
                    channel="DANA", message_ts=delivered.slack_ts)
    delivered.customer.refresh_from_db()
    assert delivered.customer.not_a_risk_until > timezone.now() + timedelta(days=89)
    assert "Marked not a risk until" in json.dumps(slack_standin.posted("DANA")[0]["blocks"])


def test_snooze_from_the_private_card_answers_through_the_response_url(
        slack, slack_standin, slack_settings, django_capture_on_commit_callbacks):
    owner = AccountOwnerFactory(slack_user_id="UANA")
    customer = CustomerFactory(owner=owner)
    with django_capture_on_commit_callbacks(execute=True):
        slack.click(user_id="UANA", action_id="snooze_select", selected=f"{customer.pk}::30", ephemeral=True)
    customer.refresh_from_db()
    assert customer.alerts_snoozed_until > timezone.now() + timedelta(days=29)
    [answer] = slack_standin.calls_to("/response/xyz")
    assert "snoozed for 30 days" in answer.arg("text")


def test_buttons_on_another_owners_customer_are_refused(slack, slack_standin, delivered,
                                                        django_capture_on_commit_callbacks):
    AccountOwnerFactory(slack_user_id="UBOB")
    [message] = slack_standin.posted("DANA")
    with django_capture_on_commit_callbacks(execute=True):
        slack.click(user_id="UBOB", action_id="snooze_30", value=button_value(message, "snooze_30"))
        slack.click(user_id="UBOB", action_id="log_action", value=button_value(message, "log_action"))
    assert not RiskFeedback.objects.exists()
    assert slack_standin.calls_to("views.open") == []
    answers = slack_standin.calls_to("/response/xyz")
    assert [a.arg("text") for a in answers] == ["That customer is not in your book (or no longer exists)."] * 2


def test_follow_up_dm_and_outcome_round_trip(slack, slack_standin, slack_settings, django_capture_on_commit_callbacks):
    owner = AccountOwnerFactory(name="Ana", slack_user_id="UANA")
    intervention = InterventionFactory(customer=CustomerFactory(owner=owner, name="Rita"), created_by=owner.user,
                                       follow_up_on=timezone.localdate(), note="Sent a 10% coupon")
    with django_capture_on_commit_callbacks(execute=True):
        assert follow_ups_send.delay().get() == 1
    [question] = slack_standin.posted("DANA")
    assert "How did it go with" in question["text"] and "Rita" in question["text"]
    buttons = next(b for b in question["blocks"] if b["type"] == "actions")["elements"]
    assert [b["action_id"] for b in buttons] == [
        "follow_up_retained", "follow_up_churned", "follow_up_no_response", "follow_up_still_working"]
    with django_capture_on_commit_callbacks(execute=True):
        response = slack.click(user_id="UANA", action_id="follow_up_retained", value=buttons[0]["value"],
                               channel="DANA", message_ts=question["ts"])
    assert response.status_code == 200
    intervention.refresh_from_db()
    assert (intervention.outcome, intervention.outcome_by) == ("retained", owner.user)
    assert "Outcome recorded: retained by <@UANA>" in json.dumps(slack_standin.posted("DANA")[0]["blocks"])
    # The question is asked once.
    with django_capture_on_commit_callbacks(execute=True):
        assert follow_ups_send.delay().get() == 0
    assert Alert.objects.filter(kind="follow_up").count() == 1


STALE_BUTTON = ("That button could not be read; it may be from an old message. "
                "Look the customer up again with `/churn customer &lt;id&gt;`.")


@pytest.mark.parametrize("action_id", ["snooze_7", "not_a_risk", "log_action", "follow_up_retained"])
@pytest.mark.parametrize("value", ["abc", "1:x:y", "", None, "1:2:3:4", "-1::7", "1.5::7"])
def test_a_button_with_a_malformed_value_gets_a_private_explanation(
        slack, slack_standin, delivered, django_capture_on_commit_callbacks, action_id, value):
    with django_capture_on_commit_callbacks(execute=True):
        response = slack.click(user_id="UANA", action_id=action_id, value=value, channel="DANA",
                               message_ts=delivered.slack_ts)
    assert response.status_code == 200
    [answer] = slack_standin.calls_to("/response/xyz")
    assert answer.arg("text") == STALE_BUTTON
    assert answer.arg("response_type") == "ephemeral"
    assert not RiskFeedback.objects.exists()
    assert slack_standin.calls_to("views.open") == []
    assert slack_standin.calls_to("chat.update") == []  # the DM keeps its buttons


def test_a_snooze_option_with_days_that_are_not_a_number_gets_a_private_explanation(
        slack, slack_standin, delivered, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = slack.click(user_id="UANA", action_id="snooze_select",
                               selected=f"{delivered.customer_id}:{delivered.pk}:soon", ephemeral=True)
    assert response.status_code == 200
    assert [a.arg("text") for a in slack_standin.calls_to("/response/xyz")] == [STALE_BUTTON]
    assert not RiskFeedback.objects.exists()


@pytest.mark.parametrize("private_metadata", [
    "not json", "[1, 2]", '"customer"', "{}", '{"customer": "abc"}', '{"customer": [1]}', '{"customer": true}',
    '{"customer": 1.5}', '{"customer": 7, "alert": "x"}', '{"customer": 7, "response_url": 5}',
])
def test_a_modal_with_malformed_metadata_says_the_form_is_out_of_date(slack, delivered, private_metadata):
    response = slack.submit_view(user_id="UANA", callback_id="log_action_modal", private_metadata=private_metadata,
                                 values=modal_values("call"))
    assert response.status_code == 200
    assert response.json() == {"response_action": "errors",
                               "errors": {"action": "This form is out of date; press Log action again."}}
    assert not Intervention.objects.exists()


def test_a_modal_with_a_date_the_picker_would_not_send_points_at_the_date(slack, delivered):
    metadata = json.dumps({"customer": delivered.customer_id, "alert": delivered.pk})
    response = slack.submit_view(user_id="UANA", callback_id="log_action_modal", private_metadata=metadata,
                                 values=modal_values("call", follow_up="next tuesday"))
    assert response.json() == {"response_action": "errors",
                               "errors": {"follow_up": "This form is out of date; press Log action again."}}
    assert not Intervention.objects.exists()


def test_the_same_modal_submitted_three_times_logs_one_action(
        slack, slack_standin, delivered, django_capture_on_commit_callbacks):
    metadata = json.dumps({"customer": delivered.customer_id, "alert": delivered.pk, "channel": "DANA",
                           "ts": delivered.slack_ts, "ephemeral": False, "response_url": None})
    with django_capture_on_commit_callbacks(execute=True):
        responses = [slack.submit_view(user_id="UANA", callback_id="log_action_modal", private_metadata=metadata,
                                       values=modal_values("coupon", "10% off"), view_id="V0DOUBLE")
                     for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all(r.content in (b"", b"{}") for r in responses)  # each closes the modal
    intervention = Intervention.objects.get()
    assert (intervention.action, intervention.note, intervention.customer) == ("coupon", "10% off", delivered.customer)
    # Another modal (another view id) is another action.
    slack.submit_view(user_id="UANA", callback_id="log_action_modal", private_metadata=metadata,
                      values=modal_values("call"), view_id="V0OTHER")
    assert Intervention.objects.count() == 2


def test_an_outcome_button_pressed_twice_records_the_outcome_once(
        slack, slack_standin, slack_settings, django_capture_on_commit_callbacks):
    owner = AccountOwnerFactory(name="Ana", slack_user_id="UANA")
    intervention = InterventionFactory(customer=CustomerFactory(owner=owner), created_by=owner.user,
                                       follow_up_on=timezone.localdate())
    with django_capture_on_commit_callbacks(execute=True):
        follow_ups_send.delay().get()
    [question] = slack_standin.posted("DANA")
    churned = next(b for b in question["blocks"] if b["type"] == "actions")["elements"][1]
    with django_capture_on_commit_callbacks(execute=True):
        first = slack.click(user_id="UANA", action_id="follow_up_churned", value=churned["value"],
                            channel="DANA", message_ts=question["ts"])
    intervention.refresh_from_db()
    recorded_at = intervention.outcome_at
    with django_capture_on_commit_callbacks(execute=True):
        second = slack.click(user_id="UANA", action_id="follow_up_churned", value=churned["value"],
                             channel="DANA", message_ts=question["ts"])
    assert (first.status_code, second.status_code) == (200, 200)
    intervention.refresh_from_db()
    assert (intervention.outcome, intervention.outcome_at) == ("churned", recorded_at)
    assert "Outcome recorded: churned by <@UANA>" in json.dumps(slack_standin.posted("DANA")[0]["blocks"])


def _opened_modal(slack, slack_standin, delivered) -> dict:
    [message] = slack_standin.posted("DANA")
    slack.click(user_id="UANA", action_id="log_action", value=button_value(message, "log_action"),
                channel="DANA", message_ts=delivered.slack_ts)
    view = slack_standin.calls_to("views.open")[-1].arg("view")
    return json.loads(view) if isinstance(view, str) else view


def test_the_modal_offers_the_crm_forms_outcomes_as_an_optional_field(slack, slack_standin, delivered):
    view = _opened_modal(slack, slack_standin, delivered)
    assert [b["block_id"] for b in view["blocks"] if b["type"] == "input"] == ["action", "note", "outcome", "follow_up"]
    outcome = next(b for b in view["blocks"] if b.get("block_id") == "outcome")
    assert outcome["optional"] is True
    crm_choices = InterventionForm().fields["outcome"].widget.choices[1:]  # after "Not known yet"
    assert [(o["value"], o["text"]["text"]) for o in outcome["element"]["options"]] == crm_choices
    assert outcome["element"]["placeholder"]["text"] == "Not known yet"


def test_a_call_and_its_outcome_are_logged_in_one_submit(
        slack, slack_standin, delivered, django_capture_on_commit_callbacks):
    view = _opened_modal(slack, slack_standin, delivered)
    with django_capture_on_commit_callbacks(execute=True):
        response = slack.submit_view(user_id="UANA", callback_id="log_action_modal",
                                     private_metadata=view["private_metadata"],
                                     values=modal_values("call", "They will stay", outcome="retained"))
    assert response.content in (b"", b"{}")
    intervention = Intervention.objects.get()
    assert (intervention.action, intervention.outcome, intervention.outcome_by) == (
        "call", "retained", delivered.owner.user)
    assert intervention.outcome_at is not None and intervention.source == "slack"
    assert "Logged: call → retained by <@UANA>" in json.dumps(slack_standin.posted("DANA")[0]["blocks"], ensure_ascii=False)


def test_without_an_outcome_the_action_waits_for_one(slack, slack_standin, delivered):
    view = _opened_modal(slack, slack_standin, delivered)
    slack.submit_view(user_id="UANA", callback_id="log_action_modal", private_metadata=view["private_metadata"],
                      values=modal_values("email"))
    assert Intervention.objects.get().outcome == Intervention.Outcome.PENDING


@pytest.mark.parametrize("outcome", ["maybe", ""])
def test_an_outcome_no_select_offers_is_shown_on_the_outcome_field(slack, delivered, outcome):
    metadata = json.dumps({"customer": delivered.customer_id, "alert": delivered.pk})
    response = slack.submit_view(user_id="UANA", callback_id="log_action_modal", private_metadata=metadata,
                                 values=modal_values("call", outcome=outcome))
    if outcome:
        assert response.json() == {"response_action": "errors", "errors": {"outcome": (
            "Unknown outcome 'maybe'; choose one of: retained, churned, no_response, still_working.")}}
        assert not Intervention.objects.exists()
    else:  # an empty value is no outcome
        assert Intervention.objects.get().outcome == Intervention.Outcome.PENDING


def test_a_modal_for_another_owners_customer_logs_nothing(slack, delivered):
    AccountOwnerFactory(slack_user_id="UBOB")
    metadata = json.dumps({"customer": delivered.customer_id, "alert": delivered.pk})
    response = slack.submit_view(user_id="UBOB", callback_id="log_action_modal", private_metadata=metadata,
                                 values=modal_values("call", outcome="retained"))
    assert response.json() == {"response_action": "errors",
                               "errors": {"action": "That customer is not in your book (or no longer exists)."}}
    assert not Intervention.objects.exists()
