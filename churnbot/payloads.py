"""What our buttons and modals carry (values, private_metadata): written by the builders, read back
by the listeners. Anything that does not read back is answered with CrmError (code "stale")."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from crm_plugin.errors import CrmError

STALE_BUTTON_TEXT = ("That button could not be read; it may be from an old message. "
                     "Look the customer up again with `/churn customer <id>`.")
STALE_FORM_TEXT = "This form is out of date; press Log action again."


def button_value(customer_pk: int, alert_pk: int | None, extra: str | int = "") -> str:
    return f"{customer_pk}:{alert_pk or ''}:{extra}"


def _stale(text: str = STALE_BUTTON_TEXT) -> CrmError:
    # A signed request can still carry junk (an old message format, a hand-made payload).
    return CrmError(text, code="stale")


def _pk(text: str, *, optional: bool = False) -> int | None:
    if optional and text == "":
        return None
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    return int(text)


def parse_button_value(value: object) -> tuple[int, int | None, str]:
    """(customer pk, alert pk or None, extra) from `button_value`; CrmError (code "stale") when it is not one."""
    try:
        if not isinstance(value, str) or value.count(":") > 2:
            raise ValueError(value)
        customer, alert, extra = (value.split(":") + ["", ""])[:3]
        return _pk(customer), _pk(alert, optional=True), extra
    except ValueError:
        raise _stale() from None


def parse_snooze_value(value: object) -> tuple[int, int | None, int]:
    """(customer pk, alert pk or None, days) from a snooze button or option."""
    customer, alert, days = parse_button_value(value)
    if not (days.isascii() and days.isdigit()):
        raise _stale()
    return customer, alert, int(days)


def outcome_value(intervention_pk: int, outcome: str, alert_pk: int | None) -> str:
    return f"{intervention_pk}:{outcome}:{alert_pk or ''}"


def parse_outcome_value(value: object) -> tuple[int, str, int | None]:
    """(intervention pk, outcome, alert pk or None) from `outcome_value`; CrmError (code "stale") when it is not one."""
    try:
        if not isinstance(value, str) or value.count(":") != 2:
            raise ValueError(value)
        intervention, outcome, alert = value.split(":")
        return _pk(intervention), outcome, _pk(alert, optional=True)
    except ValueError:
        raise _stale() from None


@dataclass(frozen=True)
class ModalMetadata:
    """What the "Log action" modal carries in `private_metadata`: the customer and where the alert is."""

    customer: int
    alert: int | None = None
    channel: str | None = None
    ts: str | None = None
    ephemeral: bool = False
    response_url: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: object) -> ModalMetadata:
        """What `to_json` wrote; CrmError (code "stale") for anything else (ids must be ints, the rest strings)."""
        try:
            data = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _stale(STALE_FORM_TEXT)
        ids = {key: data.get(key) for key in ("customer", "alert")}
        strings = {key: data.get(key) for key in ("channel", "ts", "response_url")}
        if (not _is_id(ids["customer"]) or not (ids["alert"] is None or _is_id(ids["alert"]))
                or not all(v is None or isinstance(v, str) for v in strings.values())):
            raise _stale(STALE_FORM_TEXT)
        return cls(**ids, **strings, ephemeral=data.get("ephemeral") is True)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
