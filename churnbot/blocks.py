"""Block Kit builders: every Slack message and modal the bot sends, built with slack-sdk's models.

Each builder returns plain dicts produced by `Block.to_dict()`, which runs slack-sdk's
validators, so an over-long text fails here (in our code, in tests) rather than at Slack.
Text that can grow with data (reasons, notes, names) is cut to fit before validation.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from django.conf import settings
from django.utils import timezone
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DatePickerElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from churnbot.payloads import ModalMetadata, button_value, outcome_value
from churnbot.queries import CustomerCard, CustomerFacts, customer_facts
from crm_plugin.customers.selectors import CustomerSearch
from crm_plugin.formatting import day, money, plural, reasons_for_people, top_reason
from crm_plugin.models import Alert, Customer, Intervention

SECTION_MAX = SectionBlock.text_max_length  # 3000
HEADER_MAX = HeaderBlock.text_max_length  # 150
FIELD_MAX = 2000  # a section field's text: Slack refuses more, and slack-sdk does not check it
CONFIRM_TITLE_MAX = ConfirmObject.title_max_length  # 100
CONFIRM_TEXT_MAX = ConfirmObject.text_max_length  # 300
FALLBACK_MAX = 3000
SNOOZE_DAYS = (1, 7, 30)
LOG_MODAL_CALLBACK = "log_action_modal"
ACTION_LABELS = {
    Intervention.Action.CALL: "Call",
    Intervention.Action.EMAIL: "Email",
    Intervention.Action.COUPON: "Coupon",
    Intervention.Action.RECOMMENDATION: "Personalised recommendation",
    Intervention.Action.ESCALATION: "Support escalation",
    Intervention.Action.OTHER: "Other",
}
# The modal's optional outcome: the CRM form's choices and labels.
OUTCOME_CHOICES = [(value, label) for value, label in Intervention.Outcome.choices if value]
OUTCOME_LABELS = {
    Intervention.Outcome.RETAINED: "Retained",
    Intervention.Outcome.CHURNED: "Churned",
    Intervention.Outcome.NO_RESPONSE: "No response",
    Intervention.Outcome.STILL_WORKING: "Still working",
}


# --- small helpers -------------------------------------------------------------------------------

def escape(text: str) -> str:
    """Slack mrkdwn escaping: &, < and > are control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def pct(probability: float | None) -> str:
    return "–" if probability is None else f"{probability * 100:.0f}%"


def change(delta: float | None) -> str:
    if delta is None:
        return "no history"
    points = delta * 100
    if abs(points) < 0.5:
        return "±0 pts"
    return f"{'▲' if points > 0 else '▼'} {points:+.0f} {'pt' if round(abs(points)) == 1 else 'pts'}"


def days_ago(moment: datetime) -> str:
    days = (timezone.localdate() - timezone.localdate(moment)).days
    return "today" if days <= 0 else "yesterday" if days == 1 else f"{days} days ago"


def band_label(band: str | None) -> str:
    return {"high": ":red_circle: high", "medium": ":large_orange_circle: medium", "low": ":large_green_circle: low"}.get(
        band or "", "not scored")


def crm_url(customer_pk: int) -> str:
    return f"{settings.SITE_URL}/customers/{customer_pk}/"


def history_link(customer_pk: int) -> str:
    """A link to the score history chart on the customer's CRM page."""
    return f"<{crm_url(customer_pk)}#history|Score history>"


def reasons_text(reasons: Sequence[dict], *, limit: int = SECTION_MAX, top: int = 5) -> str:
    """Bulleted reasons, strongest first, trimmed so the whole text fits `limit` characters."""
    shown = reasons_for_people(list(reasons)) or [r for r in reasons if isinstance(r, dict)]
    lines = [f"• {escape(cut(r.get('text') or r.get('code') or '', 300))}" for r in shown[:top]]
    if not lines:
        return "_No reasons recorded._"
    out: list[str] = []
    for index, line in enumerate(lines):
        remaining = len(lines) - index - 1
        suffix = f"\n_…and {remaining + 1} more_" if remaining else ""
        if len("\n".join([*out, line])) + len(suffix) > limit:
            out.append(f"_…and {len(lines) - index} more_")
            break
        out.append(line)
    return "\n".join(out)


def section(text: str, **kwargs) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=cut(text, SECTION_MAX)), **kwargs)


def context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=cut(text, SECTION_MAX))])


def facts_section(facts: CustomerFacts) -> SectionBlock:
    """Yearly value, last order, segment and stage as a two-column fields section (compact on a phone)."""
    if facts.last_order_at is not None:
        amount = f" · {money(facts.last_order_amount, digits=2)}" if facts.last_order_amount is not None else ""
        last_order = f"{day(facts.last_order_at)}{amount}\n{days_ago(facts.last_order_at)}"
    else:
        last_order = "none recorded"
    fields = [
        ("Yearly value", money(facts.value) or "–"),
        ("Last order", last_order),
        ("Segment", escape(facts.segment) if facts.segment else "–"),
        ("Stage", escape(facts.stage) if facts.stage else "not scored yet"),
    ]
    # Cut each value, not the whole field, so that a long value cannot split an escaped entity or the label.
    return SectionBlock(fields=[MarkdownTextObject(text=f"*{label}*\n{cut(value, FIELD_MAX - len(label) - 3)}")
                                for label, value in fields])


def render(blocks: Sequence[Block]) -> list[dict]:
    """Validate (slack-sdk raises SlackObjectFormationError on a broken limit) and serialise."""
    if len(blocks) > 50:
        raise ValueError("a message holds at most 50 blocks")
    return [block.to_dict() for block in blocks]


def message(fallback: str, blocks: Sequence[Block]) -> tuple[str, list[dict]]:
    """(text, blocks) as Slack takes them. Every builder returns through here.

    The top-level text is the notification and screen-reader version, and Slack reads it as
    mrkdwn too: a customer named "<!channel>" would ping everyone. So it is plain text,
    escaped here once; cut first, so that an entity such as &amp; is never cut in half.
    """
    return escape(cut(fallback, FALLBACK_MAX)), render(blocks)


def not_a_risk_confirm(name: str) -> ConfirmObject:
    """The dialog before "Not a risk": it silences the customer for as long as the service will."""
    days = settings.ALERT_NOT_A_RISK_DAYS  # what alert_mark_not_a_risk uses when the button gives no days
    text = (f"No churn alerts about {cut(name, 80)} for {plural(days, 'day')}. Scores are still recorded "
            "and the customer stays on the CRM's lists; snooze instead if you only need a break.")
    return ConfirmObject(title=cut("Mark as not a risk?", CONFIRM_TITLE_MAX),
                         text=PlainTextObject(text=cut(text, CONFIRM_TEXT_MAX), emoji=False),
                         confirm="Not a risk", deny="Cancel", style="danger")


def _customer_buttons(customer_pk: int, alert_pk: int | None, *, snooze_as_buttons: bool, not_a_risk: bool,
                      name: str = "") -> ActionsBlock:
    elements: list = [
        ButtonElement(text="Log action", action_id="log_action", value=button_value(customer_pk, alert_pk), style="primary"),
    ]
    if snooze_as_buttons:
        elements += [
            ButtonElement(text=f"Snooze {d}d", action_id=f"snooze_{d}", value=button_value(customer_pk, alert_pk, d))
            for d in SNOOZE_DAYS
        ]
    else:
        elements.append(StaticSelectElement(
            placeholder="Snooze…", action_id="snooze_select",
            options=[Option(text=f"Snooze {d} day{'s' if d > 1 else ''}", value=button_value(customer_pk, alert_pk, d))
                     for d in SNOOZE_DAYS],
        ))
    if not_a_risk:
        elements.append(ButtonElement(text="Not a risk", action_id="not_a_risk", value=button_value(customer_pk, alert_pk),
                                      style="danger", confirm=not_a_risk_confirm(name or "this customer")))
    elements.append(ButtonElement(text="Open in CRM", action_id="open_crm", url=crm_url(customer_pk)))
    return ActionsBlock(block_id="customer_actions", elements=elements)


# --- alerts --------------------------------------------------------------------------------------

def alert_message(alert: Alert, *, footer: str | None = None, digest_items: Sequence[Alert] = ()) -> tuple[str, list[dict]]:
    """(fallback text, blocks) for one outbox row. `footer` replaces the buttons ("Logged: call by @ana")."""
    if alert.kind == Alert.Kind.DIGEST:
        return _digest_message(alert, digest_items)
    if alert.kind == Alert.Kind.FOLLOW_UP:
        return _follow_up_message(alert, footer=footer)
    if alert.kind == Alert.Kind.ESCALATION:
        return _escalation_message(alert, footer=footer)
    if alert.kind == Alert.Kind.ASSIGNED:
        return _assigned_message(alert)
    return _risk_message(alert, footer=footer)


def _assigned_message(alert: Alert) -> tuple[str, list[dict]]:
    """A manager moved customers into this owner's book: who, and which customers."""
    data = alert.payload or {}
    items = list(data.get("customers") or [])
    count = int(data.get("count") or len(items))
    lines = [f"• *<{crm_url(int(c['pk']))}|{escape(str(c.get('name') or c.get('external_id')))}>* "
             f"({escape(str(c.get('external_id', '')))}) · {pct(c.get('probability'))}" for c in items]
    if count > len(items):
        lines.append(f"_…and {count - len(items)} more in the CRM_")
    blocks: list[Block] = [
        HeaderBlock(text=cut(f"{count} customer{'s' if count != 1 else ''} assigned to you", HEADER_MAX)),
        section(cut(f"*{escape(str(data.get('by', 'A manager')))}* moved "
                    f"{'this customer' if count == 1 else 'these customers'} into your book:\n" + "\n".join(lines),
                    SECTION_MAX)),
    ]
    return message(_assigned_summary(alert), blocks)


def _assigned_summary(alert: Alert) -> str:
    data = alert.payload or {}
    count = int(data.get("count") or 0)
    return f"{data.get('by', 'A manager')} assigned {count} customer{'s' if count != 1 else ''} to you."


def next_best_action_text(suggestion: dict | None) -> str:
    """'*Suggested next step:* coupon — coupon: 34% kept vs 21% held out, n=120 (segment vip)'."""
    if not suggestion:
        return ""
    if suggestion.get("action"):
        return f"*Suggested next step:* {escape(str(suggestion.get('label') or suggestion['action']))} — {escape(suggestion.get('evidence', ''))}"
    return f"*Suggested next step:* none yet — {escape(suggestion.get('evidence', ''))}"


def _escalation_message(alert: Alert, *, footer: str | None) -> tuple[str, list[dict]]:
    customer: Customer = alert.customer
    data = alert.payload or {}
    name = customer.name or customer.external_id
    blocks: list[Block] = [
        HeaderBlock(text=cut(f"Escalation: {name}", HEADER_MAX)),
        section(
            f"*<{crm_url(customer.pk)}|{escape(name)}>* ({escape(customer.external_id)}) was flagged to "
            f"*{escape(str(data.get('owner', 'their owner')))}* on {escape(str(data.get('alerted_on', '?')))} "
            f"({_waited(data)}) and nobody has logged an action since.\n"
            f"*Churn probability then:* {pct(data.get('probability'))} · {band_label(data.get('band'))}"
        ),
    ]
    if footer:
        blocks.append(context(footer))
    else:
        blocks.append(_customer_buttons(customer.pk, alert.pk, snooze_as_buttons=False, not_a_risk=False))
    blocks.append(context(f"Escalation of alert #{data.get('alert', '?')}"))
    return message(_escalation_summary(alert), blocks)


def _escalation_summary(alert: Alert) -> str:
    customer, data = alert.customer, alert.payload or {}
    return (f"No action yet: {customer.name or customer.external_id} ({customer.external_id}) was alerted to "
            f"{data.get('owner', 'their owner')} on {data.get('alerted_on', '?')} ({_waited(data)}) "
            f"at churn risk {pct(data.get('probability'))}.")


def _waited(data: dict) -> str:
    waited = data.get("days_waiting")
    return f"{plural(waited, 'day')} ago" if isinstance(waited, int) else "? days ago"


def _risk_message(alert: Alert, *, footer: str | None) -> tuple[str, list[dict]]:
    customer: Customer = alert.customer
    data = alert.payload or {}
    probability = data.get("probability")
    baseline = data.get("baseline")
    name = customer.name or customer.external_id
    trend = _trend(probability, baseline)
    why = _why(alert)
    blocks: list[Block] = [
        HeaderBlock(text=cut(f"Churn risk: {name}", HEADER_MAX)),
        section(
            f"*<{crm_url(customer.pk)}|{escape(name)}>* ({escape(customer.external_id)}) {why}.\n"
            f"*Churn probability:* {pct(probability)}{escape(trend)} · {band_label(data.get('band'))}"
        ),
        facts_section(customer_facts(customer=customer)),
        section("*Why*\n" + reasons_text(data.get("reasons") or [], limit=SECTION_MAX - 10)),
    ]
    suggestion = next_best_action_text(data.get("next_best_action"))
    if suggestion:
        blocks.append(section(cut(suggestion, SECTION_MAX)))
    if footer:
        blocks.append(context(footer))
    else:
        blocks.append(_customer_buttons(customer.pk, alert.pk, snooze_as_buttons=True, not_a_risk=True, name=name))
    as_of = data.get("as_of")
    scored = f"Scored {datetime.fromisoformat(as_of):%Y-%m-%d} · " if as_of else ""
    blocks.append(context(f"{scored}{history_link(customer.pk)} · alert #{alert.pk}"))
    return message(_risk_summary(alert), blocks)


def _trend(probability: float | None, baseline: float | None) -> str:
    if baseline is None or probability is None:
        return ""
    return f" (from {pct(baseline)}, {change(probability - baseline)})"


def _why(alert: Alert) -> str:
    return "rose sharply" if alert.kind == Alert.Kind.SHARP_RISE else "is now high risk"


def _risk_summary(alert: Alert) -> str:
    customer, data = alert.customer, alert.payload or {}
    probability = data.get("probability")
    return (f"{customer.name or customer.external_id} ({customer.external_id}) {_why(alert)}: "
            f"churn risk {pct(probability)}{_trend(probability, data.get('baseline'))}.")


def _digest_message(alert: Alert, items: Sequence[Alert]) -> tuple[str, list[dict]]:
    day = (alert.payload or {}).get("date", "")
    blocks: list[Block] = [HeaderBlock(text=cut(f"Churn digest {day}", HEADER_MAX))]
    shown = items[:40]
    for item in shown:
        data = item.payload or {}
        name = item.customer.name or item.customer.external_id
        top = top_reason(data.get("reasons") or [])
        blocks.append(section(
            f"*<{crm_url(item.customer_id)}|{escape(name)}>* · {pct(data.get('probability'))} · "
            f"{band_label(data.get('band'))}\n{escape(cut(top, 400))}"
        ))
    if len(items) > len(shown):
        blocks.append(context(f"…and {len(items) - len(shown)} more in the CRM at-risk list: {settings.SITE_URL}/"))
    if not items:
        blocks.append(section("Nothing new today."))
    needs = "needs" if len(items) == 1 else "need"
    return message(f"Daily churn digest {day}: {plural(len(items), 'customer')} {needs} attention.", blocks)


def _follow_up_message(alert: Alert, *, footer: str | None) -> tuple[str, list[dict]]:
    data = alert.payload or {}
    customer = alert.customer
    name = customer.name or customer.external_id
    action = ACTION_LABELS.get(data.get("action"), data.get("action", "action"))
    blocks: list[Block] = [section(
        f"*How did it go with <{crm_url(customer.pk)}|{escape(name)}>?*\n"
        f"You logged *{escape(action)}* on {data.get('logged_on')}"
        + (f": _{escape(cut(data.get('note') or '', 500))}_" if data.get("note") else ".")
    )]
    if footer:
        blocks.append(context(footer))
    else:
        blocks.append(ActionsBlock(block_id="follow_up_outcome", elements=[
            ButtonElement(text=label, action_id=f"follow_up_{value}", value=outcome_value(data.get("intervention"), value, alert.pk))
            for value, label in OUTCOME_LABELS.items()
        ]))
    return message(_follow_up_summary(alert), blocks)


def _follow_up_summary(alert: Alert) -> str:
    customer, data = alert.customer, alert.payload or {}
    action = ACTION_LABELS.get(data.get("action"), data.get("action", "action"))
    return f"How did it go with {customer.name or customer.external_id}? You logged: {action} on {data.get('logged_on')}."


def alert_console_text(alert: Alert, *, digest_items: Sequence[Alert] = ()) -> str:
    """The same message as readable plain text, for the console backend."""
    to = alert.owner.name if alert.owner_id else "nobody"
    if not alert.owner_id and (alert.payload or {}).get("channel"):
        to = f"channel {alert.payload['channel']}"
    lines = [f"── Slack DM to {to} <{alert.owner.email if alert.owner_id else '-'}> · {alert.get_kind_display()} "
             f"· alert #{alert.pk} ──"]
    data = alert.payload or {}
    if alert.kind == Alert.Kind.DIGEST:
        lines.append(f"Daily churn digest {data.get('date', '')}: {plural(len(digest_items), 'customer')}")
        for item in digest_items:
            d = item.payload or {}
            top = top_reason(d.get("reasons") or [])
            lines.append(f"  • {item.customer.name or item.customer.external_id} ({item.customer.external_id}) "
                         f"{pct(d.get('probability'))} {d.get('band', '')} — {top}")
    elif alert.kind == Alert.Kind.FOLLOW_UP:
        lines.append(_follow_up_summary(alert))
        lines.append("  Answer: retained / churned / no response / still working")
    elif alert.kind == Alert.Kind.ESCALATION:
        lines.append(_escalation_summary(alert))
        lines.append(f"  Open in CRM: {crm_url(alert.customer_id)}")
    elif alert.kind == Alert.Kind.ASSIGNED:
        lines.append(_assigned_summary(alert))
        for item in data.get("customers") or []:
            lines.append(f"  • {item.get('name')} ({item.get('external_id')}) {crm_url(int(item['pk']))}")
    else:
        lines.append(_risk_summary(alert))
        lines.append("  " + facts_line(customer_facts(customer=alert.customer)))
        for reason in reasons_for_people(data.get("reasons") or [], limit=5):
            lines.append(f"  • {reason['text']}")
        if data.get("next_best_action"):
            lines.append("  " + next_best_action_text(data["next_best_action"]).replace("*", ""))
        lines.append(f"  Open in CRM: {crm_url(alert.customer_id)} (score history: {crm_url(alert.customer_id)}#history)")
    return "\n".join(lines)


def facts_line(facts: CustomerFacts) -> str:
    """The facts section as one plain line, for the console backend."""
    last = f"{day(facts.last_order_at)} ({days_ago(facts.last_order_at)})" if facts.last_order_at else "none recorded"
    return (f"Yearly value {money(facts.value) or '–'} · last order {last} · segment {facts.segment or '–'} · "
            f"stage {facts.stage or 'not scored yet'}")


# --- /churn command ------------------------------------------------------------------------------

HELP_TEXT = (
    "*/churn* — churn early warning\n"
    "• `/churn customer <name, email or id>` — one customer's risk, reasons and open actions "
    "(part of a name lists the matches)\n"
    "• `/churn top [N]` — your N riskiest customers (default 10, at most 20)\n"
    "• `/churn top all [N]` — everyone's riskiest customers (managers)\n"
    "• `/churn top @someone [N]` — someone else's book (managers)\n"
    "• `/churn help` — this help"
)


def help_message(problem: str | None = None) -> tuple[str, list[dict]]:
    blocks: list[Block] = []
    if problem:
        blocks.append(section(f":warning: {escape(problem)}"))
    blocks.append(section(escape(HELP_TEXT)))
    return message((problem + " " if problem else "") + "Usage: /churn customer <name, email or id> | top [N] | help",
                   blocks)


def text_message(text: str) -> tuple[str, list[dict]]:
    return message(text, [section(escape(text))])


def customer_card(card: CustomerCard) -> tuple[str, list[dict]]:
    summary = (
        f"*<{crm_url(card.pk)}|{escape(card.name)}>* ({escape(card.external_id)}) · owner: {escape(card.owner_name)}\n"
        f"*Churn probability:* {pct(card.probability)} · {band_label(card.band)}\n"
        f"*Change:* 7 days {change(card.change_7d)} · 30 days {change(card.change_30d)}"
    )
    blocks: list[Block] = [
        HeaderBlock(text=cut(f"{card.name}", HEADER_MAX)),
        section(summary),
        facts_section(card.facts),
        section("*Top reasons*\n" + reasons_text(card.reasons, limit=SECTION_MAX - 20)),
    ]
    if card.next_best_action:
        blocks.append(section(cut(next_best_action_text(card.next_best_action), SECTION_MAX)))
    if card.open_actions:
        lines = [
            f"• {escape(a.action)} on {a.created_on:%Y-%m-%d}"
            + (f", follow up {a.follow_up_on:%Y-%m-%d}" if a.follow_up_on else "")
            + (f" — {escape(cut(a.note, 200))}" if a.note else "")
            for a in card.open_actions
        ]
        blocks.append(section(cut("*Open actions*\n" + "\n".join(lines), SECTION_MAX)))
    else:
        blocks.append(section("*Open actions*\nnone"))
    now = timezone.now()
    quiet = []
    if card.snoozed_until and card.snoozed_until > now:
        quiet.append(f"alerts snoozed until {card.snoozed_until:%Y-%m-%d}")
    if card.not_a_risk_until and card.not_a_risk_until > now:
        quiet.append(f"marked not a risk until {card.not_a_risk_until:%Y-%m-%d}")
    blocks.append(_customer_buttons(card.pk, None, snooze_as_buttons=False, not_a_risk=False))
    scored = f"Scored {card.as_of:%Y-%m-%d}" if card.as_of else "Not scored yet"
    blocks.append(context(" · ".join([scored, history_link(card.pk), *quiet])))
    return message(f"{card.name} ({card.external_id}): churn risk {pct(card.probability)}", blocks)


def top_list(customers: Sequence[Customer], *, title: str) -> tuple[str, list[dict]]:
    if not customers:
        return text_message(f"{title}: no scored customers yet.")
    blocks: list[Block] = [HeaderBlock(text=cut(title, HEADER_MAX))]
    lines = []
    for rank, customer in enumerate(customers, start=1):
        score = customer.latest_score
        top = top_reason(score.reasons or [])
        lines.append(
            f"{rank}. *<{crm_url(customer.pk)}|{escape(customer.name or customer.external_id)}>* "
            f"({escape(customer.external_id)}) · {pct(score.probability)} {score.band}"
            + (f" · {escape(customer.owner.name)}" if customer.owner_id else "")
            + (f"\n      _{escape(cut(top, 150))}_" if top else "")
        )
    # Pack lines into as few sections as fit the 3000-character limit.
    chunk: list[str] = []
    for line in lines:
        if chunk and len("\n".join([*chunk, line])) > SECTION_MAX:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    blocks.append(context(escape("`/churn customer <id>` for details")))
    return message(f"{title}: {plural(len(customers), 'customer')}", blocks)


SHOW_CUSTOMER_ACTION = "show_customer"


def customer_choices(found: CustomerSearch, *, text: str) -> tuple[str, list[dict]]:
    """Several customers match a search: one line each with a button that opens the card."""
    shown = found.customers
    blocks: list[Block] = [HeaderBlock(text=cut(f"{plural(found.total, 'customer')} match “{text}”", HEADER_MAX))]
    for customer in shown:
        score = customer.latest_score
        risk = f"{pct(score.probability)} {score.band}" if score is not None else "not scored"
        blocks.append(section(
            f"*<{crm_url(customer.pk)}|{escape(customer.name or customer.external_id)}>* "
            f"({escape(customer.external_id)}) · {risk}"
            + (f" · {escape(customer.owner.name)}" if customer.owner_id else ""),
            accessory=ButtonElement(text="Show", action_id=SHOW_CUSTOMER_ACTION, value=button_value(customer.pk, None)),
        ))
    more = found.total - len(shown)
    hint = f"{more} more — refine the search. " if more > 0 else ""
    blocks.append(context(escape(f"{hint}Show opens a card; `/churn customer <id>` with an id from the list does too.")))
    return message(f"{plural(found.total, 'customer')} match {text}: pick one.", blocks)


# --- modal ---------------------------------------------------------------------------------------

def log_action_modal(*, customer: Customer, metadata: ModalMetadata) -> dict:
    """The "Log action" modal. `metadata` (customer, alert, where the message is) rides along."""
    view = View(
        type="modal",
        callback_id=LOG_MODAL_CALLBACK,
        title="Log retention action",
        submit="Log",
        close="Cancel",
        private_metadata=metadata.to_json(),
        blocks=[
            section(f"*{escape(customer.name or customer.external_id)}* ({escape(customer.external_id)})"),
            InputBlock(block_id="action", label="What did you do?", element=StaticSelectElement(
                action_id="value", placeholder="Choose an action",
                options=[Option(text=label, value=value) for value, label in ACTION_LABELS.items()],
            )),
            InputBlock(block_id="note", label="Note", optional=True, element=PlainTextInputElement(
                action_id="value", multiline=True, max_length=4000,
                placeholder="What was said or offered",
            )),
            InputBlock(block_id="outcome", label="Outcome", optional=True, element=StaticSelectElement(
                action_id="value", placeholder="Not known yet",
                options=[Option(text=label, value=value) for value, label in OUTCOME_CHOICES],
            ), hint="If you already know how it ended, record it now."),
            InputBlock(block_id="follow_up", label="Follow up on", optional=True, element=DatePickerElement(
                action_id="value", placeholder="Ask me how it went on…",
            ), hint="If the outcome is not known yet, we'll DM you on this date to ask how it went."),
        ],
    )
    return view.to_dict()


def logged_footer(*, action: str, slack_user_id: str, follow_up_on: date | None, outcome: str = "") -> str:
    label = ACTION_LABELS.get(action, action).lower()
    if outcome:
        label += f" → {dict(OUTCOME_CHOICES).get(outcome, outcome).lower()}"
    text = f":white_check_mark: Logged: {label} by <@{slack_user_id}>"
    if follow_up_on:
        text += f" · follow-up {follow_up_on:%Y-%m-%d}"
    return text
