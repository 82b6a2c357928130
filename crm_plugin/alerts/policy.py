"""The alert policy: which risky customers their owner hears about today, and how.

A pipeline of small steps (score selection -> triggers -> eligibility (still ordering: an early
warning about a customer who already lapsed is noise) -> suppression -> control group -> routing
-> persistence): the control group only sets a candidate's status to `held_out`; routing leaves
such candidates alone (they use no cap) and persistence stores them with `is_control=True`,
never delivered.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, FloatField, Max, Min, OuterRef, Subquery
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner, Alert, ChurnScore, Customer, Event
from mlcore.control_group import control_group_member
from mlcore.uplift import NextBestActionModel

RISK_KINDS = (Alert.Kind.HIGH_RISK, Alert.Kind.SHARP_RISE)
# Alerts that used up an owner's immediate quota for the day.
QUOTA_STATUSES = (Alert.Status.PENDING, Alert.Status.SENDING, Alert.Status.SENT, Alert.Status.FAILED)
REASONS_IN_PAYLOAD = 5
# pg_advisory_xact_lock key of the alert policy (any constant no other lock in the product uses).
POLICY_LOCK_KEY = 0x616C657274


@dataclass
class AlertPolicySummary:
    """What one policy run decided, for the operator and run_daily's log line."""

    as_of: datetime
    considered: int = 0
    immediate: int = 0
    digested: int = 0
    digests: int = 0
    already_alerted: int = 0
    skipped_snoozed: int = 0
    skipped_not_a_risk: int = 0
    skipped_cooldown: int = 0
    skipped_no_owner: int = 0
    skipped_lapsed: int = 0
    held_out: int = 0
    alert_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["as_of"] = self.as_of.isoformat()
        return data

    def __str__(self) -> str:
        days = settings.ALERT_MAX_DAYS_SINCE_ORDER
        lapsed = f"{self.skipped_lapsed} lapsed (no order for over {days} days), " if days else ""
        return (
            f"alerts as of {self.as_of:%Y-%m-%d %H:%M}: {self.considered} scores considered, "
            f"{self.immediate} immediate, {self.digested} into {self.digests} digest(s), {self.held_out} held out "
            f"(control group); skipped "
            f"{self.skipped_cooldown} cooldown, {self.skipped_snoozed} snoozed, {self.skipped_not_a_risk} not-a-risk, "
            f"{self.skipped_no_owner} without owner, {lapsed}{self.already_alerted} already alerted"
        )


@dataclass
class _Candidate:
    customer: Customer
    score: ChurnScore
    kind: str
    baseline: float | None  # lowest probability in the sharp-rise window, or the previous score
    status: str = Alert.Status.PENDING
    next_best_action: dict | None = None


# Rounding slack in "a rise of at least ALERT_SHARP_RISE" (0.65 - 0.45 is 0.19999999999999996).
EPSILON = 1e-9


def _day_scores(as_of: datetime):
    """One score per customer at `as_of`: the newest row when several model versions scored that day.

    A scalar subquery that walks the (customer, as_of) index from `as_of` down and stops at the first
    row, not NOT EXISTS or `as_of = %s` in the subquery: on a young shop PostgreSQL's statistics know
    no rows for the new day, and it then compared every pair of the day's scores (44 s for 10,000
    customers instead of milliseconds; quadratic in the customers).
    """
    newest = (ChurnScore.objects.filter(customer_id=OuterRef("customer_id"), as_of__lte=as_of)
              .order_by("-as_of", "-created_at", "-pk").values("pk")[:1])
    return ChurnScore.objects.filter(as_of=as_of, pk=Subquery(newest))


def _score_facts(as_of: datetime):
    """Per score of the day, what its triggers are decided from: the previous score, the lowest in the
    sharp-rise window, the highest probability already alerted inside the cooldown, and whether this
    very score already has a risk alert (a re-run).

    Each is a correlated subquery that PostgreSQL answers with one probe of an index on (customer,
    time) per score, so the cost follows the day's scores, not the length of the history.
    """
    window_start = as_of - timedelta(days=settings.ALERT_SHARP_RISE_DAYS)
    cooldown_start = as_of - timedelta(days=settings.ALERT_COOLDOWN_DAYS)
    earlier = ChurnScore.objects.filter(customer_id=OuterRef("customer_id"), as_of__lt=as_of).order_by("-as_of", "-pk")
    window_low = (
        ChurnScore.objects.filter(customer_id=OuterRef("customer_id"), as_of__gte=window_start, as_of__lt=as_of)
        .values("customer_id").annotate(low=Min("probability")).values("low")[:1]
    )
    alerted_at = (
        Alert.objects.filter(customer_id=OuterRef("customer_id"), kind__in=RISK_KINDS,
                             score__as_of__gt=cooldown_start, score__as_of__lte=as_of)
        .values("customer_id").annotate(top=Max("score__probability")).values("top")[:1]
    )
    return (
        _day_scores(as_of)
        .annotate(
            previous_band=Subquery(earlier.values("band")[:1]),
            previous_probability=Subquery(earlier.values("probability")[:1], output_field=FloatField()),
            window_low=Subquery(window_low, output_field=FloatField()),
            alerted_at=Subquery(alerted_at, output_field=FloatField()),
            alerted_today=Exists(Alert.objects.filter(score_id=OuterRef("pk"), kind__in=RISK_KINDS)),
        )
        .order_by()
        .values_list("pk", "probability", "band", "previous_band", "previous_probability", "window_low",
                     "alerted_at", "alerted_today")
    )


# What each score earns, over the facts above: `own` is its trigger on its own (crossing into high
# is the headline when both apply); inside the cooldown only a further sharp rise over the highest
# probability already alerted counts, and a score that earns something but is covered by that
# earlier alert is "cooldown". The facts are materialised once (PostgreSQL would otherwise
# re-run a fact's subquery at every place the CASE mentions it).
_TRIGGERS_SQL = """
WITH facts (id, probability, band, previous_band, previous_probability, window_low, alerted_at, alerted_today)
    AS {materialized} ({facts}),
own AS (
    SELECT facts.*, CASE
        WHEN band = %s AND (previous_band IS NULL OR previous_band <> %s) THEN %s
        WHEN window_low IS NOT NULL AND probability - window_low >= %s THEN %s
    END AS own
    FROM facts
)
SELECT id, (SELECT count(*) FROM facts) AS considered, alerted_today,
    CASE WHEN alerted_at IS NULL THEN own
         WHEN probability - alerted_at >= %s THEN %s
         WHEN own IS NOT NULL THEN 'cooldown' END AS earned,
    CASE WHEN alerted_at IS NOT NULL THEN alerted_at
         WHEN own = %s THEN previous_probability
         ELSE window_low END AS baseline
FROM own
WHERE alerted_today OR own IS NOT NULL OR (alerted_at IS NOT NULL AND probability - alerted_at >= %s)
"""


def _scores_triggered(as_of: datetime) -> tuple[int, list[tuple[int, bool, str | None, float | None]]]:
    """How many customers were scored at `as_of`, and (score id, already alerted, earned, baseline)
    for those of their scores that are news or a re-run."""
    facts_sql, facts_params = _score_facts(as_of).query.sql_with_params()
    rise = settings.ALERT_SHARP_RISE - EPSILON
    high, sharp, crossing = ChurnScore.Band.HIGH, Alert.Kind.SHARP_RISE, Alert.Kind.HIGH_RISK
    sql = _TRIGGERS_SQL.format(materialized="MATERIALIZED" if connection.vendor == "postgresql" else "",
                               facts=facts_sql)
    params = [*facts_params, high, high, crossing, rise, sharp, rise, sharp, crossing, rise]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # The count rides on every row; a day where nothing is news returns no row to carry it.
    considered = rows[0][1] if rows else _day_scores(as_of).count()
    return considered, [(pk, bool(already), earned, baseline) for pk, _, already, earned, baseline in rows]


def _last_orders(customer_ids: list[int], as_of: datetime) -> dict[int, datetime]:
    last_order: dict[int, datetime] = {}
    for start in range(0, len(customer_ids), 2000):  # only triggered customers: a few % of the book
        rows = (Event.objects.filter(customer_id__any_of=customer_ids[start:start + 2000], kind=Event.Kind.ORDER,
                                     occurred_at__lt=as_of)
                .values("customer_id").annotate(last=Max("occurred_at")).order_by().values_list("customer_id", "last"))
        last_order.update(rows)
    return last_order


def _active_customer_ids(customers: list[Customer], as_of: datetime) -> set[int]:
    """Customers still worth an early warning: an order in the ALERT_MAX_DAYS_SINCE_ORDER days
    before `as_of` (never ordered: first seen within them). The others already churned by the
    label's own definition (no order within the horizon). 0 days = everyone counts as active."""
    max_days = settings.ALERT_MAX_DAYS_SINCE_ORDER
    if max_days <= 0:
        return {c.pk for c in customers}
    since = as_of - timedelta(days=max_days)
    last_order = _last_orders([c.pk for c in customers], as_of)
    active = set()
    for customer in customers:
        last = last_order.get(customer.pk) or customer.first_seen_at or customer.created_at
        if last >= since:
            active.add(customer.pk)
    return active


def _select(as_of: datetime, summary: AlertPolicySummary) -> list[_Candidate]:
    """Triggers, then suppression: already alerted, lapsed, cooldown, not-a-risk, snooze, no owner.

    The database decides the triggers over every score of the day and returns only the scores
    that earn something (a few % of the book) as objects; the checks after it run on those.
    """
    considered, rows = _scores_triggered(as_of)
    summary.considered += considered
    earned: dict[int, tuple[str, float | None]] = {}
    for pk, already, kind, baseline in rows:
        if already:
            summary.already_alerted += 1
        elif kind is not None:
            earned[pk] = (kind, baseline)
    triggered = list(ChurnScore.objects.filter(pk__any_of=list(earned)).select_related("customer", "customer__owner")
                     .order_by("customer_id")) if earned else []
    # Eligibility comes before every suppression check, so the control group is drawn (in _hold_out)
    # among exactly the customers we would tell: lapsed customers are neither alerted nor held out.
    active = _active_customer_ids([score.customer for score in triggered], as_of)
    candidates = []
    for score in triggered:
        customer = score.customer
        if customer.pk not in active:
            summary.skipped_lapsed += 1
            continue
        kind, baseline = earned[score.pk]
        if kind == "cooldown":
            summary.skipped_cooldown += 1
            continue
        if customer.not_a_risk_until and customer.not_a_risk_until > as_of:
            summary.skipped_not_a_risk += 1
            continue
        if customer.alerts_snoozed_until and customer.alerts_snoozed_until > as_of:
            summary.skipped_snoozed += 1
            continue
        if customer.owner_id is None:
            summary.skipped_no_owner += 1
            continue
        candidates.append(_Candidate(customer=customer, score=score, kind=kind, baseline=baseline))
    return candidates


def _hold_out(candidates: list[_Candidate]) -> list[_Candidate]:
    """The control group: a stable random share of would-be-alerted customers gets no alert.

    Drawn by the shop's id (not the database pk) so a re-import keeps everyone in their group;
    the same policy run records them (status held_out, is_control) so the report can compare.
    """
    share = settings.CONTROL_GROUP_SHARE
    if share <= 0:
        return candidates
    for candidate in candidates:
        if control_group_member(candidate.customer.external_id, share=share, salt=settings.CONTROL_GROUP_SALT):
            candidate.status = Alert.Status.HELD_OUT
    return candidates


def _day_bounds(as_of: datetime) -> tuple[datetime, datetime]:
    day = timezone.localdate(as_of)
    start = timezone.make_aware(datetime.combine(day, datetime.min.time()))
    return start, start + timedelta(days=1)


def _route(as_of: datetime, candidates: list[_Candidate]) -> list[_Candidate]:
    """Per owner: immediate DMs up to the daily cap, riskiest first; the rest (and digest-mode owners) to the digest."""
    start, end = _day_bounds(as_of)
    by_owner: dict[int, list[_Candidate]] = defaultdict(list)
    for candidate in candidates:
        if candidate.status == Alert.Status.PENDING:
            by_owner[candidate.customer.owner_id].append(candidate)
    # Today's quota already used, for every owner at once (one query, not one per owner).
    used = dict(
        Alert.objects.filter(owner_id__in=list(by_owner), kind__in=RISK_KINDS, status__in=QUOTA_STATUSES,
                             score__as_of__gte=start, score__as_of__lt=end)
        .values("owner_id").annotate(n=Count("pk")).order_by().values_list("owner_id", "n")
    ) if by_owner else {}
    for owner_id, items in by_owner.items():
        owner = items[0].customer.owner
        items.sort(key=lambda c: (-c.score.probability, c.customer.pk))
        if owner.alert_mode == AccountOwner.AlertMode.DIGEST:
            room = 0
        else:
            room = max(owner.daily_alert_cap - used.get(owner_id, 0), 0)
        for index, candidate in enumerate(items):
            candidate.status = Alert.Status.PENDING if index < room else Alert.Status.DIGESTED
    return candidates


def _suggest(as_of: datetime, candidates: list[_Candidate], model: NextBestActionModel | None) -> None:
    """The next-best action (with its evidence) for every customer who will hear about it."""
    from crm_plugin.loop.report import (
        next_best_action_model,
        next_best_actions,
        recommendation_payload,
    )

    told = [c for c in candidates if c.status != Alert.Status.HELD_OUT]
    if not told:
        return
    model = model or next_best_action_model(as_of=as_of)
    suggestions = next_best_actions(customers=[c.customer for c in told], model=model)
    for candidate in told:
        candidate.next_best_action = recommendation_payload(suggestions[candidate.customer.pk])


def _payload(candidate: _Candidate, as_of: datetime) -> dict:
    score = candidate.score
    return {
        "trigger": candidate.kind,
        "as_of": as_of.isoformat(),
        "probability": round(score.probability, 4),
        "band": score.band,
        "baseline": None if candidate.baseline is None else round(candidate.baseline, 4),
        "reasons": list(score.reasons or [])[:REASONS_IN_PAYLOAD],
        "next_best_action": candidate.next_best_action,
    }


def _digest_for(owner: AccountOwner, day: date) -> Alert:
    """The owner's digest for `day` that can still take items (a sent digest gets a successor)."""
    base = f"digest:{owner.pk}:{day.isoformat()}"
    existing = list(Alert.objects.filter(kind=Alert.Kind.DIGEST, owner=owner, idempotency_key__startswith=base))
    for digest in existing:
        if digest.status == Alert.Status.PENDING:
            return digest
    key = base if not existing else f"{base}:{len(existing) + 1}"
    return Alert.objects.create(
        kind=Alert.Kind.DIGEST, owner=owner, idempotency_key=key, payload={"date": day.isoformat()},
    )


def _persist(as_of: datetime, candidates: list[_Candidate], summary: AlertPolicySummary) -> None:
    """Store the decided alerts in bulk; a key that already exists (a re-run) is counted, not stored again."""
    digests: dict[int, Alert] = {}
    day = timezone.localdate(as_of)
    keys = {f"risk:{c.customer.pk}:{c.score.pk}": c for c in candidates}
    existing = set()
    key_list = list(keys)
    for start in range(0, len(key_list), 2000):
        existing.update(Alert.objects.filter(idempotency_key__in=key_list[start:start + 2000])
                        .values_list("idempotency_key", flat=True))
    rows = []
    for key, candidate in keys.items():
        customer, score = candidate.customer, candidate.score
        if key in existing:
            summary.already_alerted += 1
            continue
        digest = None
        if candidate.status == Alert.Status.DIGESTED:
            if customer.owner_id not in digests:
                digests[customer.owner_id] = _digest_for(customer.owner, day)
            digest = digests[customer.owner_id]
        rows.append(Alert(idempotency_key=key, customer=customer, owner=customer.owner, score=score, kind=candidate.kind,
                          status=candidate.status, digest=digest, payload=_payload(candidate, as_of),
                          is_control=candidate.status == Alert.Status.HELD_OUT))
    # One INSERT per 1,000 rows instead of a get_or_create (two statements and a savepoint) per alert.
    for alert in Alert.objects.bulk_create(rows, batch_size=1000):
        summary.alert_ids.append(alert.pk)
        if alert.status == Alert.Status.DIGESTED:
            summary.digested += 1
        elif alert.status == Alert.Status.PENDING:
            summary.immediate += 1
        elif alert.status == Alert.Status.HELD_OUT:
            summary.held_out += 1
    for digest in digests.values():
        count = digest.digested_alerts.count()
        digest.payload = {**digest.payload, "count": count}
        digest.save(update_fields=["payload"])
        summary.alert_ids.append(digest.pk)
    summary.digests = len(digests)


@transaction.atomic
def alert_policy_apply(*, as_of: datetime, next_best_action: NextBestActionModel | None = None) -> AlertPolicySummary:
    """Create the outbox rows earned by the scores at `as_of`. Idempotent for the same `as_of`.

    Call after a scoring run; then the daily pipeline queues delivery (`churnbot.tasks.alerts_queue_pending()`).
    `next_best_action`: the model fitted on the episodes known at `as_of`, when the caller has one
    (the daily job fits it once for the policy and the stored closed loop); else it is fitted here.
    """
    if timezone.is_naive(as_of):
        raise CrmError("as_of must be timezone-aware.", code="naive_datetime")
    if connection.vendor == "postgresql":
        # One policy run at a time (a retried task beside a manual run): the second waits, then
        # finds the first one's alerts and counts them as already alerted instead of failing on
        # the idempotency keys of the bulk insert. SQLite serialises writers anyway.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [POLICY_LOCK_KEY])
    summary = AlertPolicySummary(as_of=as_of)
    candidates = _select(as_of, summary)
    candidates = _hold_out(candidates)
    candidates = _route(as_of, candidates)
    _suggest(as_of, candidates, next_best_action)
    _persist(as_of, candidates, summary)
    return summary
