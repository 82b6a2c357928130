"""Django admin for the CRM: list columns, search and filters a CRM user needs, safe for 100k+ customers.

Append-only and derived rows (events, scores, runs, cache entries, backtests) are view-only; foreign keys
use autocomplete or raw ids (never a select with every customer); list pages select related rows
up front so their query count does not grow with the number of rows shown.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import Truncator

from crm_plugin.errors import CrmError
from crm_plugin.formatting import day
from crm_plugin.models import (
    AccountOwner,
    Alert,
    BacktestRun,
    ChurnScore,
    Customer,
    EncoderCacheEntry,
    Event,
    Intervention,
    LoopSnapshot,
    MessageEmbedding,
    ModelVersion,
    RiskFeedback,
    ScoringRun,
)
from crm_plugin.alerts.outbox import alert_resend
from crm_plugin.events.importing import customer_last_order_refresh
from crm_plugin.interventions.services import intervention_record_outcome, interventions_delete

CUSTOMER_SEARCH = ("customer__external_id", "customer__name", "customer__email", "customer__owner__name")
# For tables with millions of rows (events, score history) a substring search would scan them all.
CUSTOMER_SEARCH_EXACT = ("=customer__external_id", "=customer__email")
INLINE_LIMIT = 10


def _short(text: str, length: int = 60) -> str:
    return Truncator(text or "").chars(length)


class CustomerExactSearchMixin:
    """Search a big per-customer table by exact shop id or email (and an exact extra field).

    The customer is looked up first, so the query uses the (customer, time) index instead of
    scanning millions of rows through a join with an OR across tables.
    """

    exact_search_field: str | None = None

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        ids = list(Customer.objects.filter(Q(external_id=term) | Q(email__iexact=term))
                   .values_list("pk", flat=True)[:1000])
        condition = Q(customer_id__in=ids)
        if self.exact_search_field:
            condition |= Q(**{self.exact_search_field: term})
        return queryset.filter(condition), False


class ReadOnlyAdmin(admin.ModelAdmin):
    """For rows written only by services (append-only logs, derived results): view, never edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class RecentFormSet(BaseInlineFormSet):
    """Shows only the newest rows of a related list, so a customer with years of history opens fast."""

    limit = INLINE_LIMIT

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_recent_queryset"):
            queryset = super().get_queryset()
            ids = list(queryset.values_list("pk", flat=True)[: self.limit])
            self._recent_queryset = queryset.filter(pk__in=ids)
        return self._recent_queryset


class RecentInline(admin.TabularInline):
    formset = RecentFormSet
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class RecentScoreInline(RecentInline):
    model = ChurnScore
    verbose_name_plural = f"Latest {INLINE_LIMIT} churn scores"
    fields = ("as_of", "probability", "band", "model_version")
    readonly_fields = fields


class RecentInterventionInline(RecentInline):
    model = Intervention
    fk_name = "customer"
    verbose_name_plural = f"Latest {INLINE_LIMIT} interventions"
    fields = ("created_at", "action", "created_by", "note", "outcome", "outcome_at")
    readonly_fields = fields


class RecentEventInline(RecentInline):
    model = Event
    verbose_name_plural = f"Latest {INLINE_LIMIT} events (all of them: Events, filtered by customer)"
    fields = ("occurred_at", "kind", "amount", "quantity", "rating", "text")
    readonly_fields = fields


@admin.register(AccountOwner)
class AccountOwnerAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "user", "slack_user_id", "is_manager", "manager", "alert_mode",
                    "daily_alert_cap", "customer_count")
    list_filter = ("is_manager", "alert_mode")
    search_fields = ("name", "email", "user__username", "slack_user_id")
    list_select_related = ("user", "manager")
    autocomplete_fields = ("user", "manager")
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(n_customers=Count("customers"))

    @admin.display(description="Customers", ordering="n_customers")
    def customer_count(self, owner: AccountOwner) -> int:
        return owner.n_customers


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("external_id", "name", "email", "segment", "owner", "risk", "value", "first_seen_at",
                    "alerts_snoozed_until")
    list_filter = ("segment", "owner", "latest_score__band", "alerts_snoozed_until")
    search_fields = ("external_id", "name", "email", "owner__name", "owner__email")
    list_select_related = ("owner", "latest_score")
    autocomplete_fields = ("owner",)
    readonly_fields = ("risk", "segment_since", "created_at", "updated_at")
    date_hierarchy = "first_seen_at"
    show_full_result_count = False  # avoids a second COUNT(*) over 100k+ rows on every search
    inlines = (RecentScoreInline, RecentInterventionInline, RecentEventInline)
    fieldsets = (
        (None, {"fields": ("external_id", "name", "email", "segment", "segment_since", "owner", "first_seen_at",
                           "attributes")}),
        ("Risk", {"fields": ("risk", "value", "alerts_snoozed_until", "not_a_risk_until")}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def save_model(self, request: HttpRequest, obj: Customer, form, change: bool) -> None:
        # The segment keeps no history: a new one holds from now on, so snapshots of earlier dates
        # must not see it (mlcore.snapshot.segment_at).
        if change and "segment" in form.changed_data:
            obj.segment_since = timezone.now()
        super().save_model(request, obj, form, change)

    @admin.display(description="Risk", ordering="latest_score__probability")
    def risk(self, customer: Customer) -> str:
        score = customer.latest_score
        if score is None:
            return "-"
        return f"{score.probability:.0%} ({score.get_band_display().lower()}, {day(score.as_of)})"


@admin.register(Event)
class EventAdmin(CustomerExactSearchMixin, admin.ModelAdmin):
    """Events are an append-only log: they can be added (a manual correction) but never edited or deleted."""

    list_display = ("occurred_at", "customer", "kind", "amount", "quantity", "rating", "text_short", "source_id")
    list_filter = ("kind", "rating", "occurred_at")
    search_fields = CUSTOMER_SEARCH_EXACT + ("=source_id",)
    exact_search_field = "source_id"
    list_select_related = ("customer",)
    autocomplete_fields = ("customer",)
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    @admin.display(description="Text")
    def text_short(self, event: Event) -> str:
        return _short(event.text)

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return ("imported_at",)
        return [f.name for f in Event._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Event, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.kind == Event.Kind.ORDER:  # an order added by hand moves the customer's stored last order
            customer_last_order_refresh(customer_ids=[obj.customer_id])


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions are written by training and the registry; promotion is the one thing done here."""

    list_display = ("name", "family", "created_at", "trained_as_of", "horizon_days", "pr_auc", "roc_auc",
                    "is_champion", "promoted_at", "promoted_by")
    list_filter = ("family", "is_champion", "created_at")
    search_fields = ("name", "family", "artifact_path")
    list_select_related = ("promoted_by",)
    date_hierarchy = "created_at"
    actions = ("promote_to_champion",)

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def _metric(self, version: ModelVersion, key: str) -> str:
        value = (version.metrics or {}).get(key) if isinstance(version.metrics, dict) else None
        return f"{value:.3f}" if isinstance(value, (int, float)) else "-"

    @admin.display(description="PR-AUC")
    def pr_auc(self, version: ModelVersion) -> str:
        return self._metric(version, "pr_auc")

    @admin.display(description="ROC-AUC")
    def roc_auc(self, version: ModelVersion) -> str:
        return self._metric(version, "roc_auc")

    @admin.action(description="Promote to champion (the next scoring run uses it)")
    def promote_to_champion(self, request: HttpRequest, queryset: QuerySet) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Pick exactly one version to promote.", messages.ERROR)
            return
        from crm_plugin.scoring.services import model_version_promote  # loads the ML stack only when needed

        version = queryset.get()
        try:
            model_version_promote(version=version, by=request.user)
        except CrmError as error:
            self.message_user(request, error.message, messages.ERROR)
        else:
            self.message_user(request, f"{version.name} is now the champion.", messages.SUCCESS)


@admin.register(ChurnScore)
class ChurnScoreAdmin(CustomerExactSearchMixin, ReadOnlyAdmin):
    list_display = ("as_of", "customer", "owner", "probability_pct", "band", "model_version", "top_reason")
    list_filter = ("band", "model_version", "as_of")
    search_fields = CUSTOMER_SEARCH_EXACT
    list_select_related = ("customer__owner", "model_version")
    date_hierarchy = "as_of"
    show_full_result_count = False

    @admin.display(description="Owner", ordering="customer__owner__name")
    def owner(self, score: ChurnScore):
        return score.customer.owner

    @admin.display(description="Probability", ordering="probability")
    def probability_pct(self, score: ChurnScore) -> str:
        return f"{score.probability:.1%}"

    @admin.display(description="Top reason")
    def top_reason(self, score: ChurnScore) -> str:
        reasons = score.reasons if isinstance(score.reasons, list) else []
        first = reasons[0] if reasons else None
        return _short(first.get("text", "") if isinstance(first, dict) else str(first or ""), 80)


@admin.register(ScoringRun)
class ScoringRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "model_version", "as_of", "status", "n_customers", "n_encoded", "finished_at",
                    "duration", "error_short")
    list_filter = ("status", "model_version", "started_at")
    list_select_related = ("model_version",)
    date_hierarchy = "started_at"

    @admin.display(description="Duration")
    def duration(self, run: ScoringRun) -> str:
        if run.finished_at is None:
            return "-"
        return f"{(run.finished_at - run.started_at).total_seconds():.0f}s"

    @admin.display(description="Error")
    def error_short(self, run: ScoringRun) -> str:
        return _short(run.error)


@admin.register(EncoderCacheEntry)
class EncoderCacheEntryAdmin(ReadOnlyAdmin):
    list_display = ("customer", "model_version", "text_key", "embedding_bytes", "updated_at")
    list_filter = ("model_version",)
    search_fields = ("customer__external_id", "text_key")
    list_select_related = ("customer", "model_version")
    exclude = ("embedding",)
    show_full_result_count = False

    @admin.display(description="Embedding")
    def embedding_bytes(self, entry: EncoderCacheEntry) -> str:
        return f"{len(entry.embedding or b'')} bytes"


@admin.register(MessageEmbedding)
class MessageEmbeddingAdmin(ReadOnlyAdmin):
    """The message-vector cache: how many texts each encoder has seen, for operators (written by training and scoring)."""

    list_display = ("sha256", "model_id", "vector_bytes", "created_at")
    list_filter = ("model_id",)
    search_fields = ("sha256",)
    exclude = ("vector",)
    show_full_result_count = False

    @admin.display(description="Vector")
    def vector_bytes(self, entry: MessageEmbedding) -> str:
        return f"{len(entry.vector or b'')} bytes"


@admin.register(LoopSnapshot)
class LoopSnapshotAdmin(ReadOnlyAdmin):
    """The stored closed loop (written by the daily job and refreshes): when and how long, for operators."""

    list_display = ("created_at", "as_of", "seconds", "fingerprint")
    exclude = ("model", "model_signature")
    date_hierarchy = "created_at"


@admin.register(BacktestRun)
class BacktestRunAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "as_of", "horizon_days", "n_customers", "churn_rate_pct", "families")
    list_filter = ("horizon_days", "created_at")
    date_hierarchy = "created_at"

    @admin.display(description="Churn rate", ordering="churn_rate")
    def churn_rate_pct(self, run: BacktestRun) -> str:
        return f"{run.churn_rate:.1%}"

    @admin.display(description="Families")
    def families(self, run: BacktestRun) -> str:
        results = run.results if isinstance(run.results, dict) else {}
        found = results.get("families") or results.get("models") or {}
        return ", ".join(sorted(found)) if isinstance(found, dict) else ""


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """An outbox: rows are written by the alert policy and the Slack delivery; re-sending is the one action."""

    list_display = ("created_at", "kind", "status", "customer", "owner", "is_control", "attempts", "sent_at",
                    "error_short")
    list_filter = ("kind", "status", "is_control", "owner", "created_at")
    search_fields = CUSTOMER_SEARCH + ("owner__name", "idempotency_key", "slack_ts")
    list_select_related = ("customer", "owner")
    raw_id_fields = ("customer", "owner", "score", "digest")
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ("resend",)

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [f.name for f in Alert._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Last error")
    def error_short(self, alert: Alert) -> str:
        return _short(alert.last_error)

    @admin.action(description="Re-send failed alerts (after fixing the cause)")
    def resend(self, request: HttpRequest, queryset: QuerySet) -> None:
        sent, refused = 0, []
        for alert in queryset:
            try:
                alert_resend(alert=alert)
                sent += 1
            except CrmError as error:
                refused.append(f"#{alert.pk}: {error.message}")
        if sent:
            self.message_user(request, f"{sent} alert(s) queued again.", messages.SUCCESS)
        for line in refused[:10]:
            self.message_user(request, line, messages.WARNING)


@admin.register(Intervention)
class InterventionAdmin(admin.ModelAdmin):
    """Actions are logged in the CRM views and Slack (one service); here staff fix notes and record outcomes."""

    list_display = ("created_at", "customer", "owner", "action", "created_by", "source", "follow_up_on", "outcome",
                    "outcome_at")
    list_filter = ("action", "outcome", "source", "customer__owner", "created_at", "outcome_at")
    search_fields = CUSTOMER_SEARCH + ("note", "outcome_note")
    list_select_related = ("customer__owner", "created_by")
    raw_id_fields = ("customer", "alert")
    date_hierarchy = "created_at"
    actions = ("record_retained", "record_churned")
    readonly_fields = ("customer", "alert", "action", "created_by", "created_at", "source", "follow_up_sent_at",
                       "outcome", "outcome_at", "outcome_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # Deleting goes through the service, which moves each customer's stored last action back.
    def delete_model(self, request: HttpRequest, obj: Intervention) -> None:
        interventions_delete(interventions=Intervention.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        interventions_delete(interventions=queryset)

    @admin.display(description="Owner", ordering="customer__owner__name")
    def owner(self, intervention: Intervention):
        return intervention.customer.owner

    def _record(self, request: HttpRequest, queryset: QuerySet, outcome: str) -> None:
        done = 0
        for intervention in queryset:
            try:
                intervention_record_outcome(intervention=intervention, by=request.user, outcome=outcome,
                                            note="Recorded in the admin.")
                done += 1
            except CrmError as error:
                self.message_user(request, f"#{intervention.pk}: {error.message}", messages.ERROR)
        label = Intervention.Outcome(outcome).label.lower()
        self.message_user(request, f"{done} intervention(s) recorded as {label}.", messages.SUCCESS)

    @admin.action(description="Record outcome: retained")
    def record_retained(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._record(request, queryset, Intervention.Outcome.RETAINED)

    @admin.action(description="Record outcome: churned")
    def record_churned(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._record(request, queryset, Intervention.Outcome.CHURNED)


@admin.register(RiskFeedback)
class RiskFeedbackAdmin(admin.ModelAdmin):
    list_display = ("created_at", "customer", "kind", "until", "created_by")
    list_filter = ("kind", "created_at", "until")
    search_fields = CUSTOMER_SEARCH
    list_select_related = ("customer", "created_by")
    raw_id_fields = ("customer", "alert")
    autocomplete_fields = ("created_by",)
    readonly_fields = ("created_at",)
    date_hierarchy = "created_at"


admin.site.site_header = "Churn early warning"
admin.site.site_title = "Churn early warning admin"
admin.site.index_title = "CRM data"
