"""Read-only queries behind the Slack cards (customer card, top list, alert rendering).

Access control is not decided here: callers pass customers they got from
`crm_plugin.customers.selectors.customer_search_visible` / `customer_list_visible_to`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import QuerySet

from crm_plugin.models import AccountOwner, Alert, ChurnScore, Customer, Event, Intervention
from crm_plugin.web.selectors import WorklistFilters, worklist_queryset_from

TOP_MAX = 20


@dataclass(frozen=True)
class OpenAction:
    action: str
    created_on: date
    follow_up_on: date | None
    note: str


@dataclass(frozen=True)
class CustomerFacts:
    """What decides whether a customer is worth the call, shown in alerts and on the card."""

    value: Decimal  # expected yearly spend
    segment: str
    stage: str  # the lifecycle stage's label, "" until scored
    last_order_at: datetime | None
    last_order_amount: Decimal | None


def customer_facts(*, customer: Customer) -> CustomerFacts:
    """The facts for one (already access-checked) customer: one indexed query for the last order."""
    last_order = (
        Event.objects.filter(customer=customer, kind=Event.Kind.ORDER)
        .order_by("-occurred_at").values_list("occurred_at", "amount").first()
    )
    return CustomerFacts(
        value=customer.value, segment=customer.segment,
        stage=customer.get_lifecycle_stage_display() if customer.lifecycle_stage else "",
        last_order_at=last_order[0] if last_order else None, last_order_amount=last_order[1] if last_order else None,
    )


@dataclass(frozen=True)
class CustomerCard:
    """Everything the `/churn customer` card shows, as plain values."""

    pk: int
    external_id: str
    name: str
    owner_name: str
    probability: float | None
    band: str | None
    as_of: datetime | None
    change_7d: float | None
    change_30d: float | None
    facts: CustomerFacts
    reasons: list[dict] = field(default_factory=list)
    open_actions: list[OpenAction] = field(default_factory=list)
    snoozed_until: datetime | None = None
    not_a_risk_until: datetime | None = None
    next_best_action: dict | None = None  # closed_loop.recommendation_payload, for high-risk customers


def _probability_on_or_before(customer: Customer, moment: datetime) -> float | None:
    return (
        ChurnScore.objects.filter(customer=customer, as_of__lte=moment)
        .order_by("-as_of", "-pk").values_list("probability", flat=True).first()
    )


def customer_card_data(*, customer: Customer) -> CustomerCard:
    """The card for one (already access-checked) customer: 4-5 indexed queries."""
    latest = customer.latest_score
    if latest is None:
        latest = ChurnScore.objects.filter(customer=customer).order_by("-as_of", "-pk").first()
    change_7d = change_30d = None
    if latest is not None:
        before_7 = _probability_on_or_before(customer, latest.as_of - timedelta(days=7))
        before_30 = _probability_on_or_before(customer, latest.as_of - timedelta(days=30))
        change_7d = None if before_7 is None else latest.probability - before_7
        change_30d = None if before_30 is None else latest.probability - before_30
    actions = [
        OpenAction(action=i.get_action_display(), created_on=i.created_at.date(), follow_up_on=i.follow_up_on,
                   note=i.note)
        for i in Intervention.objects.filter(customer=customer, outcome=Intervention.Outcome.PENDING)
        .order_by("-created_at")[:5]
    ]
    suggestion = None
    if latest is not None and latest.band == ChurnScore.Band.HIGH:
        from crm_plugin.loop.selectors import next_best_action_model_cached
        from crm_plugin.loop.report import next_best_action_for, recommendation_payload

        # The fitted model is cached until the loop's data changes (the customer page uses the same one):
        # fitting it per lookup took seconds on a large book, and Slack gives a slash command 3 s.
        suggestion = recommendation_payload(next_best_action_for(customer=customer, model=next_best_action_model_cached()))
    return CustomerCard(
        next_best_action=suggestion,
        pk=customer.pk, external_id=customer.external_id, name=customer.name or customer.external_id,
        owner_name=customer.owner.name if customer.owner_id else "nobody",
        probability=latest.probability if latest else None, band=latest.band if latest else None,
        as_of=latest.as_of if latest else None, change_7d=change_7d, change_30d=change_30d,
        reasons=list(latest.reasons or []) if latest else [],
        facts=customer_facts(customer=customer),
        open_actions=actions, snoozed_until=customer.alerts_snoozed_until, not_a_risk_until=customer.not_a_risk_until,
    )


def customer_list_riskiest(*, visible: QuerySet[Customer], owner: AccountOwner | None, limit: int) -> list[Customer]:
    """The top of the CRM worklist's at-risk tab among `visible`, optionally one owner's book: active
    customers with a medium or high score, by value at risk. Lapsed customers are win-back cases and
    never lead the list, as in the CRM and the alert policy."""
    filters = WorklistFilters(stage=Customer.Stage.AT_RISK, owner_id=owner.pk if owner is not None else None)
    qs = worklist_queryset_from(visible, filters=filters).filter(latest_score__isnull=False)
    return list(qs[:limit])


def owner_find(*, handle: str) -> AccountOwner | None:
    """An owner named in `/churn top @someone`: by Slack id, then name, then email or its local part."""
    handle = handle.strip().lstrip("@")
    if not handle:
        return None
    owners = AccountOwner.objects.select_related("user")
    return (
        owners.filter(slack_user_id=handle).first()
        or owners.filter(name__iexact=handle).first()
        or owners.filter(email__iexact=handle).first()
        or owners.filter(email__istartswith=f"{handle}@").first()
        or owners.filter(user__username__iexact=handle).first()
    )


def alert_get(*, pk: int | str | None) -> Alert | None:
    if pk in (None, ""):
        return None
    return Alert.objects.select_related("customer", "owner", "score").filter(pk=int(pk)).first()


def intervention_get(*, pk: int | str) -> Intervention | None:
    return Intervention.objects.select_related("customer", "customer__owner").filter(pk=int(pk)).first()


def digest_items(*, digest: Alert) -> list[Alert]:
    items = list(digest.digested_alerts.select_related("customer"))
    items.sort(key=lambda a: (-float((a.payload or {}).get("probability") or 0), a.pk))
    return items
