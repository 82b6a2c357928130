"""The CRM data model: who owns which customers, what customers did, and what we did about it.

Everything that matters is a row with a timestamp. `Event` is an append-only behaviour log (a
ticket's or coupon's state may only move forward, dated by `state_imported_at`);
`ChurnScore` keeps history; `Alert` is an outbox; `Intervention` records retention work and
its outcome, which flows back into training as a label.
Business logic lives in `services/` and `selectors/`, never here.
"""
from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, OrderBy, Q
from django.db.models.functions import Now, Upper
from django.utils import timezone


class AccountOwner(models.Model):
    """An account manager who owns a book of customers (or a manager who sees all)."""

    class AlertMode(models.TextChoices):
        IMMEDIATE = "immediate", "Immediate DMs"
        DIGEST = "digest", "One daily digest"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_owner")
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)
    slack_user_id = models.CharField(max_length=32, blank=True, default="", db_index=True)
    is_manager = models.BooleanField(default=False, help_text="Managers see every owner's customers.")
    manager = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reports",
        help_text="Who unanswered alerts escalate to.",
    )
    alert_mode = models.CharField(max_length=16, choices=AlertMode.choices, default=AlertMode.IMMEDIATE)
    daily_alert_cap = models.PositiveIntegerField(default=10, help_text="Immediate alerts per day; the rest go into the digest.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["slack_user_id"], condition=~Q(slack_user_id=""), name="owner_unique_slack_id"),
        ]

    def __str__(self) -> str:
        return self.name


class SortIndex(models.Index):
    """An index in the order the worklist pages through customers: within `prefix` (a lifecycle stage),
    `column` descending with empty values last, ties to the higher latest probability, then the id;
    and the owner, so an account manager's book is filtered inside the index.

    Read forwards it is the descending order; read backwards (for the part with a value, then the
    part without) the ascending one, so both directions of a sort are a walk down one index.
    PostgreSQL puts NULL first in a descending index unless told otherwise; SQLite puts it last
    already and refuses the words, so they are left out there.
    """

    def __init__(self, prefix: str | None = None, column: str = "", *, name: str, expressions=(), **kwargs) -> None:
        if not expressions:
            tie = [] if column == "latest_probability" else [F("latest_probability").desc(nulls_last=True)]
            expressions = ([F(prefix)] if prefix else []) + [F(column).desc(nulls_last=True), *tie, F("id"), F("owner")]
        super().__init__(*expressions, name=name, **kwargs)

    def deconstruct(self):
        path, args, kwargs = super().deconstruct()
        return path, (), {**kwargs, "expressions": args}

    def create_sql(self, model, schema_editor, using="", **kwargs):
        index = self
        if not schema_editor.connection.vendor == "postgresql":
            index = self.clone()
            index.expressions = tuple(
                OrderBy(e.expression, descending=e.descending) if isinstance(e, OrderBy) else e for e in self.expressions)
        return super(SortIndex, index).create_sql(model, schema_editor, using=using, **kwargs)


class Customer(models.Model):
    """A shop customer, keyed by the shop's own id (`external_id`)."""

    class Stage(models.TextChoices):
        # The values are mlcore.lifecycle's; the order is the worklist's tabs.
        AT_RISK = "at_risk", "At risk"
        NEW = "new", "New"
        ACTIVE = "active", "Active"
        WON_BACK = "won_back", "Won back"
        LAPSED = "lapsed", "Lapsed"

    # Unique by a constraint, not unique=True: on PostgreSQL that would add a varchar_pattern_ops twin
    # index, which no query needs and every daily scoring UPDATE writes to.
    external_id = models.CharField(max_length=128)
    name = models.CharField(max_length=200, blank=True, default="")
    # Indexed below: email by UPPER (the search's case-insensitive match), segment without the
    # varchar_pattern_ops twin db_index adds on PostgreSQL.
    email = models.EmailField(blank=True, default="")
    segment = models.CharField(max_length=64, blank=True, default="")
    # The segment has no history, only its current value: snapshots before this time treat it as
    # unknown rather than read today's segment into the past. A database default too, because the
    # importer inserts customers with its own SQL.
    segment_since = models.DateTimeField(
        default=timezone.now, db_default=Now(), editable=False,
        help_text="When the current segment was recorded (by an import or in the admin); models see "
                  "the segment only at dates after this.",
    )
    # No index of its own: customer_owner_segment_stage starts with it.
    owner = models.ForeignKey(AccountOwner, null=True, blank=True, on_delete=models.SET_NULL, related_name="customers",
                              db_index=False)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # Denormalised by the scoring service so lists need no per-row query.
    latest_score = models.ForeignKey(
        "ChurnScore", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    value = models.DecimalField(
        max_digits=14, decimal_places=2, default=0,
        help_text="Expected yearly spend (from the last 365 days), used for value at risk.",
    )
    # Written with latest_score (scoring, in bulk) so "risk rose in the last 7 days" is an index
    # range scan instead of a score-history lookup per customer at query time.
    risk_change_7d = models.FloatField(
        null=True, blank=True, editable=False,
        help_text="Latest probability minus that of the earliest score in the 7 days before it; "
                  "empty when there is no such score.",
    )
    # Written with latest_score (scoring, in bulk, mlcore.lifecycle) so the worklist's tabs, `/churn top`
    # and the profit card filter on one indexed column instead of each customer's last order.
    lifecycle_stage = models.CharField(
        max_length=16, choices=Stage.choices, blank=True, default="", db_default="", editable=False,
        help_text="New, active, at risk, lapsed (no order within the horizon) or won back; empty until scored.",
    )
    # The worklist's other ranking columns, stored so that every sort of a page of 1,000,000 customers is
    # a walk down an index instead of a join and a sort of every row. Written where their inputs change:
    # the probability and value at risk with latest_score and value (scoring, in bulk), the last order
    # by the event import, the last action by logging (or deleting) an action.
    latest_probability = models.FloatField(
        null=True, blank=True, editable=False, help_text="The latest score's churn probability; empty until scored.")
    value_at_risk = models.FloatField(
        null=True, blank=True, editable=False,
        help_text="Latest churn probability x yearly value: what the worklist ranks by; empty until scored.")
    last_order_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="When the latest order was placed.")
    last_action_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the latest retention action was logged.")
    # Who moved the customer into the current owner's book, and when (reassignment by a manager).
    owner_assigned_at = models.DateTimeField(null=True, blank=True, editable=False)
    owner_assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False,
    )
    # Set by snooze / "not a risk" feedback; respected by the alert policy.
    alerts_snoozed_until = models.DateTimeField(null=True, blank=True)
    not_a_risk_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]
        constraints = [models.UniqueConstraint(fields=["external_id"], name="customer_external_id_unique")]
        indexes = [
            models.Index(fields=["risk_change_7d"], name="customer_risk_change_7d"),
            # Search by shop id or email (case-insensitive, `customer_identifier_match`): index lookups.
            models.Index(Upper("external_id"), name="customer_external_id_upper"),
            models.Index(Upper("email"), name="customer_email_upper"),
            models.Index(fields=["segment"], name="customer_segment"),
            # An owner's book: its tab counts, its segments (a loose index scan), and the owner foreign key.
            models.Index(fields=["owner", "segment", "lifecycle_stage"], name="customer_owner_segment_stage"),
            # The worklist's sorts within a lifecycle stage (and the "All" tab's default sort): see SortIndex.
            SortIndex("lifecycle_stage", "value_at_risk", name="customer_stage_value_at_risk"),
            SortIndex("lifecycle_stage", "latest_probability", name="customer_stage_risk"),
            SortIndex("lifecycle_stage", "risk_change_7d", name="customer_stage_change"),
            SortIndex("lifecycle_stage", "value", name="customer_stage_yearly"),
            SortIndex("lifecycle_stage", "last_order_at", name="customer_stage_last_order"),
            SortIndex("lifecycle_stage", "last_action_at", name="customer_stage_last_action"),
            SortIndex(None, "value_at_risk", name="customer_value_at_risk"),
        ]

    def __str__(self) -> str:
        return f"{self.name or 'Customer'} ({self.external_id})"


class Event(models.Model):
    """One thing a customer did. Append-only; `source_id` makes re-imports idempotent.

    The one change a stored event takes is its state moving forward (a ticket closing, a coupon
    being redeemed) when the shop re-sends it; `state_imported_at` then says when that became known.
    """

    class Kind(models.TextChoices):
        ORDER = "order", "Order"
        VISIT = "visit", "Visit"
        REVIEW = "review", "Review"
        TICKET = "ticket", "Support ticket"
        RETURN = "return", "Return"
        COUPON = "coupon", "Coupon"

    # No single-column index: the (customer, occurred_at) index serves customer lookups, and
    # one index less makes bulk imports faster.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="events", db_index=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    occurred_at = models.DateTimeField()
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    quantity = models.PositiveIntegerField(null=True, blank=True)
    rating = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    text = models.TextField(blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)
    source_id = models.CharField(max_length=255, unique=True, help_text="Stable id from the source; re-imports skip known ids.")
    imported_at = models.DateTimeField(default=timezone.now)
    # When a re-sent event moved the state forward; null while the state is the one first imported.
    # A closing (redemption) without a date counts from here in snapshots, not from imported_at.
    state_imported_at = models.DateTimeField(
        null=True, blank=True, help_text="When an import moved this ticket to closed (coupon to redeemed); empty "
                                         "while the state is the one first imported.")

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["customer", "occurred_at"], name="event_customer_time"),
            models.Index(fields=["occurred_at"], name="event_time"),
            models.Index(fields=["kind", "occurred_at"], name="event_kind_time"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(rating__isnull=True) | Q(rating__gte=1, rating__lte=5), name="event_rating_1_5"),
        ]
        # Its own permission rather than add_event: importing also creates customers and sets
        # their profile and owner, which giving someone "add event" in the admin should not imply.
        permissions = [("import_events", "Can import events and set customer profiles and owners through the API")]

    def __str__(self) -> str:
        return f"{self.kind} {self.occurred_at:%Y-%m-%d} {self.customer_id}"


class ModelVersion(models.Model):
    """A trained model: an artifact folder in the `models` storage plus its metrics."""

    name = models.CharField(max_length=100, unique=True)
    family = models.CharField(max_length=32, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    artifact_path = models.CharField(max_length=500, help_text="Folder in the `models` storage.")
    manifest = models.JSONField(default=dict, blank=True, help_text="sha256 of every artifact file.")
    trained_as_of = models.DateTimeField(null=True, blank=True)
    horizon_days = models.PositiveIntegerField(default=90)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Validation metrics.")
    is_champion = models.BooleanField(default=False, db_index=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_champion"], condition=Q(is_champion=True), name="one_champion"),
        ]

    def __str__(self) -> str:
        return self.name


class ChurnScore(models.Model):
    """A customer's churn probability at `as_of` from one model version. History is kept."""

    class Band(models.TextChoices):
        HIGH = "high", "High"
        MEDIUM = "medium", "Medium"
        LOW = "low", "Low"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="scores")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="scores")
    as_of = models.DateTimeField()
    probability = models.FloatField()
    band = models.CharField(max_length=8, choices=Band.choices)
    reasons = models.JSONField(default=list, blank=True, help_text="[{code, text, weight, evidence}], strongest first.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-as_of"]
        indexes = [
            models.Index(fields=["customer", "-as_of"], name="score_customer_time"),
            models.Index(fields=["as_of", "band"], name="score_time_band"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["customer", "model_version", "as_of"], name="one_score_per_run"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.probability:.2f} @ {self.as_of:%Y-%m-%d}"


class ScoringRun(models.Model):
    """One run of daily scoring, for operators.

    A running run holds a lease that every finished chunk renews; a run whose lease ran out made no
    progress for that long (its worker or process died) and is marked failed when the next run starts.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="scoring_runs")
    as_of = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    n_customers = models.PositiveIntegerField(default=0)
    n_encoded = models.PositiveIntegerField(default=0, help_text="Customers whose text went through the encoder.")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, help_text="A running run with no progress by then has stopped.")
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at"]


class EncoderCacheEntry(models.Model):
    """The encoder output for a customer's text, reused while the text is unchanged."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    text_key = models.CharField(
        max_length=64,
        help_text="Fingerprint of what the text was built from (mlcore.snapshot.text_keys): same key, same text.")
    embedding = models.BinaryField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_version", "customer"], name="one_cache_entry"),
        ]


class MessageEmbedding(models.Model):
    """A customer message's vector from the frozen message encoder, keyed by its content (mlcore.messages).

    Shared by every model version and run: the same words are encoded once per encoder.
    """

    model_id = models.CharField(max_length=100, help_text="The encoder: folder name and a hash of its weights.")
    sha256 = models.CharField(max_length=64, help_text="sha256 of the normalised message text.")
    vector = models.BinaryField(help_text="float16 values, little-endian.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_id", "sha256"], name="one_message_embedding"),
        ]


class BacktestRun(models.Model):
    """The result of one out-of-time backtest (all families side by side)."""

    created_at = models.DateTimeField(default=timezone.now)
    as_of = models.DateTimeField()
    horizon_days = models.PositiveIntegerField()
    n_customers = models.PositiveIntegerField(default=0)
    churn_rate = models.FloatField(default=0)
    results = models.JSONField(default=dict, help_text="The backtest JSON, plus curves for the report.")

    class Meta:
        ordering = ["-created_at"]


class Alert(models.Model):
    """An outbox row: one message to one owner. `idempotency_key` makes retries safe."""

    class Kind(models.TextChoices):
        HIGH_RISK = "high_risk", "Crossed into high risk"
        SHARP_RISE = "sharp_rise", "Sharp rise"
        DIGEST = "digest", "Daily digest"
        FOLLOW_UP = "follow_up", "Follow-up question"
        ESCALATION = "escalation", "Escalation to manager"
        ASSIGNED = "assigned", "Customers assigned to you"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        DIGESTED = "digested", "Rolled into a digest"
        HELD_OUT = "held_out", "Held out (control group)"

    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    owner = models.ForeignKey(AccountOwner, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    score = models.ForeignKey(ChurnScore, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    is_control = models.BooleanField(default=False, help_text="Held out at random to measure retention lift.")
    digest = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="digested_alerts")
    payload = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    slack_channel = models.CharField(max_length=32, blank=True, default="")
    slack_ts = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["customer", "-created_at"], name="alert_customer_time")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.customer_id} ({self.status})"


class Intervention(models.Model):
    """A retention action taken on a customer, and what came of it."""

    class Action(models.TextChoices):
        CALL = "call", "Call"
        EMAIL = "email", "Email"
        COUPON = "coupon", "Coupon"
        RECOMMENDATION = "recommendation", "Personalised recommendation"
        ESCALATION = "escalation", "Support escalation"
        OTHER = "other", "Other"

    class Outcome(models.TextChoices):
        PENDING = "", "Not recorded yet"
        RETAINED = "retained", "Retained"
        CHURNED = "churned", "Churned"
        NO_RESPONSE = "no_response", "No response"
        STILL_WORKING = "still_working", "Still working on it"

    class Source(models.TextChoices):
        CRM = "crm", "CRM"
        SLACK = "slack", "Slack"
        API = "api", "API"
        ADMIN = "admin", "Admin"
        SIMULATION = "simulation", "Simulation"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="interventions")
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="interventions")
    action = models.CharField(max_length=16, choices=Action.choices)
    note = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.CRM)
    follow_up_on = models.DateField(null=True, blank=True)
    follow_up_sent_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING, blank=True)
    outcome_note = models.TextField(blank=True, default="")
    outcome_at = models.DateTimeField(null=True, blank=True)
    outcome_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    idempotency_key = models.CharField(
        max_length=200, unique=True, null=True, blank=True, default=None,
        help_text="Set by callers that may send the same action twice (a re-sent Slack form): one row per key.",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["customer", "-created_at"], name="intervention_customer_time")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} on {self.customer_id}"


class RiskFeedback(models.Model):
    """An owner's snooze or "not a risk" on a customer; the alert policy respects it."""

    class Kind(models.TextChoices):
        SNOOZE = "snooze", "Snooze"
        NOT_A_RISK = "not_a_risk", "Not a risk"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="risk_feedback")
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    until = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]


class LoopSnapshot(models.Model):
    """The closed loop computed once and read by every page and Slack: the report (lift, funnel,
    next-best-action evidence) and the fitted next-best-action model.

    Written by the daily job and by a refresh task when the loop's data changed; reading every
    alert episode and fitting the model took seconds, too slow for a web request.
    """

    created_at = models.DateTimeField(default=timezone.now)
    as_of = models.DateTimeField(help_text="Episodes known by then were used.")
    fingerprint = models.CharField(max_length=40, help_text="The loop's data and settings it was computed from.")
    report = models.JSONField(default=dict)
    model = models.BinaryField(help_text="The fitted next-best-action model (pickle), signed with the SECRET_KEY.")
    model_signature = models.CharField(max_length=128)
    seconds = models.FloatField(default=0, help_text="Time it took to compute.")

    class Meta:
        ordering = ["-created_at"]
