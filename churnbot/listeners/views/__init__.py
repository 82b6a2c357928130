"""Modal submissions: the "Log action" modal creates an Intervention (with its outcome, when known)
through the CRM's service."""
from __future__ import annotations

from datetime import date

from slack_bolt import Ack, App
from slack_sdk import WebClient

from churnbot.blocks import LOG_MODAL_CALLBACK, logged_footer
from churnbot.listeners._common import owner_and_customer, tell
from churnbot.payloads import STALE_FORM_TEXT, ModalMetadata
from churnbot.queries import alert_get
from crm_plugin.errors import CrmError
from crm_plugin.models import Intervention
from crm_plugin.interventions.services import intervention_create

# Which modal field shows a service error.
ERROR_FIELD = {"follow_up_in_past": "follow_up", "note_too_long": "note", "invalid_outcome": "outcome"}


def _value(state: dict, block: str) -> dict:
    return (state.get(block) or {}).get("value") or {}


def _selected(state: dict, block: str) -> str:
    """The picked option of a select, "" when nothing (or something no select sends) was picked."""
    option = _value(state, block).get("selected_option")
    value = option.get("value") if isinstance(option, dict) else None
    return value if isinstance(value, str) else ""


def log_action_submitted(ack: Ack, body: dict, view: dict, client: WebClient) -> None:
    # The ack carries validation errors back into the modal, so the (fast) insert happens first.
    state = (view.get("state") or {}).get("values") or {}
    action = _selected(state, "action")
    note = _value(state, "note").get("value") or ""
    outcome = _selected(state, "outcome")
    picked = _value(state, "follow_up").get("selected_date")
    user_id = body["user"]["id"]
    # One modal is one action: Slack re-sends a submission it got no answer to, and a double
    # click submits twice, both with the same view id.
    key = f"slack:{view['id']}" if view.get("id") else None
    try:
        meta = ModalMetadata.from_json(view.get("private_metadata"))
        follow_up_on = date.fromisoformat(picked) if picked else None
        owner, customer = owner_and_customer(slack_user_id=user_id, customer_pk=meta.customer, client=client)
        intervention_create(customer=customer, by=owner.user, action=action, note=note, follow_up_on=follow_up_on,
                            outcome=outcome, alert=alert_get(pk=meta.alert), source=Intervention.Source.SLACK,
                            idempotency_key=key)
    except CrmError as exc:
        ack(response_action="errors", errors={ERROR_FIELD.get(exc.code, "action"): exc.message[:150]})
        return
    except (ValueError, TypeError):  # a date the date picker would not send
        ack(response_action="errors", errors={"follow_up": STALE_FORM_TEXT})
        return
    ack()
    tell({"container": {"is_ephemeral": meta.ephemeral}, "response_url": meta.response_url},
         logged_footer(action=action, slack_user_id=user_id, follow_up_on=follow_up_on, outcome=outcome),
         alert_pk=meta.alert if meta.ts else None)


def register(app: App) -> None:
    app.view(LOG_MODAL_CALLBACK)(log_action_submitted)
