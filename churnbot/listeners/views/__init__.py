"""Modal submissions: the "Log action" modal creates an Intervention through the CRM's service."""
from __future__ import annotations

import json
from datetime import date

from slack_bolt import Ack, App
from slack_sdk import WebClient

from churnbot.blocks import LOG_MODAL_CALLBACK, logged_footer
from churnbot.listeners._common import owner_and_customer, tell
from churnbot.queries import alert_get
from crm_plugin.errors import CrmError
from crm_plugin.models import Intervention
from crm_plugin.interventions.services import intervention_create

# Which modal field shows a service error.
ERROR_FIELD = {"follow_up_in_past": "follow_up", "note_too_long": "note"}


def _value(state: dict, block: str) -> dict:
    return (state.get(block) or {}).get("value") or {}


def log_action_submitted(ack: Ack, body: dict, view: dict, client: WebClient) -> None:
    # The ack carries validation errors back into the modal, so the (fast) insert happens first.
    meta = json.loads(view.get("private_metadata") or "{}")
    state = (view.get("state") or {}).get("values") or {}
    action = (_value(state, "action").get("selected_option") or {}).get("value", "")
    note = _value(state, "note").get("value") or ""
    picked = _value(state, "follow_up").get("selected_date")
    user_id = body["user"]["id"]
    try:
        follow_up_on = date.fromisoformat(picked) if picked else None
        owner, customer = owner_and_customer(slack_user_id=user_id, customer_pk=int(meta["customer"]), client=client)
        alert = alert_get(pk=meta.get("alert"))
        intervention_create(customer=customer, by=owner.user, action=action, note=note, follow_up_on=follow_up_on,
                            alert=alert, source=Intervention.Source.SLACK)
    except CrmError as exc:
        ack(response_action="errors", errors={ERROR_FIELD.get(exc.code, "action"): exc.message[:150]})
        return
    except (KeyError, ValueError):
        ack(response_action="errors", errors={"action": "This form is out of date; press Log action again."})
        return
    ack()
    tell({"container": {"is_ephemeral": meta.get("ephemeral")}, "response_url": meta.get("response_url")},
         logged_footer(action=action, slack_user_id=user_id, follow_up_on=follow_up_on),
         alert_pk=meta.get("alert") if meta.get("ts") else None)


def register(app: App) -> None:
    app.view(LOG_MODAL_CALLBACK)(log_action_submitted)
