"""CRM web views: at-risk worklist, customer 360, interventions, model report.

Views parse input, call one selector or service, and render. Access control comes from
`crm_plugin.customers.selectors`; writes go through each concept's services (`crm_plugin/<concept>/`); a CrmError becomes a
message next to the field it is about.
"""
from __future__ import annotations

import csv
import re
from datetime import date, timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from crm_plugin.web import charts
from crm_plugin.loop import selectors as sl
from crm_plugin.web import selectors as sv
from crm_plugin.errors import CrmError
from crm_plugin.web.forms import (
    BulkForm, InterventionFilterForm, InterventionForm, OutcomeForm, PromoteForm, WorklistFilterForm,
)
from crm_plugin.models import Customer, Event, Intervention, ModelVersion
from crm_plugin.customers.selectors import can_reassign, customer_list_visible_to, owner_for_user
from crm_plugin.alerts.selectors import alert_silence_reason
from crm_plugin.alerts.feedback import alert_snooze_many
from crm_plugin.formatting import day, reasons_for_people
from crm_plugin.customers.services import customer_reassign
from crm_plugin.interventions.services import intervention_create, intervention_record_outcome
from mlcore.compare import CHAMPION_METRIC

WORKLIST_PAGE_SIZE = 50
INTERVENTIONS_PAGE_SIZE = 50
TIMELINE_STEP = 25
TIMELINE_MAX = 500
BULK_SNOOZE_DAYS = 30


def _role(user) -> str:
    if user.is_superuser:
        return "admin"
    owner = owner_for_user(user)
    if owner and owner.is_manager:
        return "manager"
    return "owner" if owner else "none"


def _query_without_page(request: HttpRequest) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


# --- worklist ----------------------------------------------------------------------------


def _worklist_filters(request: HttpRequest) -> tuple[WorklistFilterForm, sv.WorklistFilters]:
    user = request.user
    owners = sv.owners_for_filter(user=user)
    form = WorklistFilterForm(request.GET or None, owners=owners, segments=sv.segments_for_filter(user=user))
    form.owner_list = owners  # the bulk bar's "reassign to" list too: one query for both
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        q = data["q"].strip()
        stage = data["stage"]
        # A search with no tab chosen looks in every stage: a name typed in should find the customer
        # even when they lapsed long ago.
        if stage == "all" or (not stage and q):
            stage = ""
        elif not stage:
            stage = sv.DEFAULT_STAGE
        sort = data["sort"] or "-value"
        filters = sv.WorklistFilters(
            stage=stage, sort=sort.lstrip("-"), descending=sort.startswith("-"),
            owner_id=data.get("owner"), band=data["band"], segment=data["segment"],
            risk_rose=data["rose"], no_action=data["no_action"], q=q,
        )
    else:
        filters = sv.WorklistFilters()
    return form, filters


def _url_with(request: HttpRequest, **changes) -> str:
    """This page's query string with some parameters changed (None removes one), page reset."""
    params = request.GET.copy()
    params.pop("page", None)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return "?" + params.urlencode() if params else "?"


def _worklist_tabs(request: HttpRequest, filters: sv.WorklistFilters) -> list[dict]:
    counts = sv.worklist_stage_counts(user=request.user, owner_id=filters.owner_id)
    tabs = [{"value": value, "label": label, "count": counts.get(value, 0), "url": _url_with(request, stage=value),
             "current": filters.stage == value} for value, label in Customer.Stage.choices]
    tabs.append({"value": "all", "label": "All", "count": sum(counts.values()), "url": _url_with(request, stage="all"),
                 "current": not filters.stage})
    return tabs


def _worklist_sort_links(request: HttpRequest, filters: sv.WorklistFilters) -> dict[str, dict]:
    """Per sortable column: the link that sorts by it (descending first, then toggles) and its state."""
    links = {}
    for key in sv.WORKLIST_SORTS:
        current = filters.sort == key
        descending_next = not (current and filters.descending)
        links[key] = {
            "url": _url_with(request, sort=("-" if descending_next else "") + key),
            "aria": ("descending" if filters.descending else "ascending") if current else "none",
            "arrow": ("↓" if filters.descending else "↑") if current else "",
        }
    return links


@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    form, filters = _worklist_filters(request)
    qs = sv.worklist_queryset(user=request.user, filters=filters)
    tabs = _worklist_tabs(request, filters)
    # Unfiltered, the list is as long as its tab says: no second count of the same rows.
    count = None if filters.narrowed else next((t["count"] for t in tabs if t["current"]), None)
    ids = sv.WorklistIds(qs, filters=filters, count=count)
    page = Paginator(ids, WORKLIST_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = sv.worklist_rows(sv.worklist_page_customers(qs, list(page.object_list)))
    for row in rows:
        row.spark = charts.sparkline(row.history)
    role = _role(request.user)
    return render(request, "crm/worklist.html", {
        "form": form, "page": page, "rows": rows, "query": _query_without_page(request),
        "export_query": request.GET.urlencode(), "role": role,
        "no_owner": role == "none", "filters": filters,
        "stage_label": dict(Customer.Stage.choices).get(filters.stage, "All stages"),
        "tabs": tabs, "sorts": _worklist_sort_links(request, filters),
        "filtered": any([filters.owner_id, filters.band, filters.segment, filters.risk_rose, filters.no_action, filters.q]),
        "can_reassign": can_reassign(user=request.user),
        # Every row has its own "Log action" form: the options are rendered once, not 50 times.
        "action_options": format_html_join("", '<option value="{}">{}</option>', Intervention.Action.choices),
        "outcome_options": format_html_join("", '<option value="{}">{}</option>',
                                            [c for c in Intervention.Outcome.choices if c[0]]),
        "owners": form.owner_list,
        "nav": "worklist",
    })


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return fallback


@login_required
@require_POST
def worklist_bulk(request: HttpRequest) -> HttpResponse:
    """The "with selected" bar: reassign (managers), snooze, or export the ticked customers."""
    form = BulkForm(request.POST)
    back = _safe_next(request, reverse("crm-worklist"))
    if not form.is_valid():
        messages.error(request, "Choose what to do with the selected customers.")
        return redirect(back)
    ids, do = form.selected(), form.cleaned_data["do"]
    try:
        if do == "export":
            if not ids:
                raise CrmError("Select at least one customer to export.", code="nothing_selected")
            qs = sv.worklist_queryset(user=request.user, filters=sv.WorklistFilters(stage="")).filter(pk__in=ids)
            return _csv_response(qs, name="selected")
        if do == "snooze":
            count = alert_snooze_many(customer_ids=ids, by=request.user, days=BULK_SNOOZE_DAYS)
            messages.success(request, f"Snoozed {count} customer{'s' if count != 1 else ''} for {BULK_SNOOZE_DAYS} days: "
                                      "no alerts about them until then.")
        else:
            if not form.cleaned_data.get("owner"):
                raise CrmError("Choose the owner to move the customers to.", code="invalid_owner")
            done = customer_reassign(customer_ids=ids, owner=form.cleaned_data["owner"], by=request.user)
            owner_name = done.notice.owner.name if done.notice else ""
            if done.moved:
                messages.success(request, f"Moved {len(done.moved)} customer{'s' if len(done.moved) != 1 else ''} "
                                          f"to {owner_name}; {owner_name} is told in Slack."
                                 + (f" {done.unchanged} already in that book." if done.unchanged else ""))
            else:
                messages.info(request, "Nothing moved: the selected customers are already in that book.")
    except CrmError as error:
        if error.code == "forbidden":
            raise PermissionDenied(error.message) from error
        messages.error(request, error.message)
    return redirect(back)


class _Echo:
    def write(self, value: str) -> str:
        return value


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection");
# names, emails, segments and review quotes come from the shop and its customers.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")


def _csv_cell(value) -> object:
    """The value, with a leading quote if a spreadsheet would take it for a formula.

    Numbers stay numbers: a negative value such as -12.50 is not a formula.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


@login_required
def worklist_export(request: HttpRequest) -> StreamingHttpResponse:
    """The whole current filter as CSV, streamed so 100,000 rows never sit in memory."""
    _, filters = _worklist_filters(request)
    return _csv_response(sv.worklist_queryset(user=request.user, filters=filters), name="at-risk")


def _csv_response(qs, *, name: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow([
            "external_id", "name", "email", "owner", "segment", "lifecycle_stage", "value", "probability", "band",
            "value_at_risk", "scored_as_of", "top_reason", "last_alert", "last_alert_at", "last_action",
            "last_action_at", "last_outcome",
        ])
        for row in sv.worklist_rows_streamed(qs):
            c, s = row.customer, row.score
            yield writer.writerow(_csv_cell(cell) for cell in [
                c.external_id, c.name, c.email, c.owner.name if c.owner else "", c.segment, c.lifecycle_stage, c.value,
                f"{s.probability:.4f}" if s else "", s.band if s else "",
                f"{c.value_at_risk:.2f}" if c.value_at_risk is not None else "",
                s.as_of.isoformat() if s else "", row.top_reason,
                row.last_alert.get_kind_display() if row.last_alert else "",
                row.last_alert.created_at.isoformat() if row.last_alert else "",
                row.last_action.get_action_display() if row.last_action else "",
                row.last_action.created_at.isoformat() if row.last_action else "",
                row.last_action.get_outcome_display() if row.last_action else "",
            ])

    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


# --- customer 360 ------------------------------------------------------------------------


def _customer_for(request: HttpRequest, pk: int) -> Customer:
    customer = Customer.objects.select_related("owner", "latest_score", "latest_score__model_version").filter(pk=pk).first()
    if customer is None:
        raise Http404("No such customer.")
    if not customer_list_visible_to(user=request.user).filter(pk=pk).exists():
        raise PermissionDenied("This customer is in another owner's book.")
    return customer


def _tenure(customer: Customer) -> str:
    since = customer.first_seen_at or customer.created_at
    days = max((timezone.now() - since).days, 0)
    if days >= 365:
        return f"{days / 365:.1f} years"
    if days >= 60:
        return f"{days // 30} months"
    return f"{days} days"


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _fact_text(value) -> str:
    """A fact as people read it: a date the model stored as YYYY-MM-DD reads like every other date."""
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        try:
            return day(date.fromisoformat(value))
        except ValueError:
            pass
    return str(value)


def _evidence_text(evidence) -> str:
    """Evidence may be a quote, a list of quotes or a mapping of facts; show each as text."""
    if evidence is None or evidence == "":
        return ""
    if isinstance(evidence, dict):
        return "; ".join(f"{key}: {_fact_text(value)}" for key, value in evidence.items() if value not in (None, ""))
    if isinstance(evidence, (list, tuple)):
        return " · ".join(_evidence_text(item) for item in evidence if item not in (None, ""))
    return str(evidence)


def _reasons_for_display(reasons) -> list[dict]:
    """Sentences for people; the raw evidence (feature names, numbers) and weights go in a detail,
    except quotes from the customer, which are the customer's own words and stay in view."""
    shown = []
    for reason in reasons_for_people(reasons):
        evidence = reason["evidence"]
        if isinstance(evidence, dict):
            quote = evidence.get("quote") if isinstance(evidence.get("quote"), str) else ""
        else:  # older scores stored the customer's words as the evidence itself
            quote = evidence if isinstance(evidence, str) else ""
        shown.append({**reason, "quote": quote, "evidence": _evidence_text(reason["evidence"])})
    return shown


def _outcome_errors(request: HttpRequest, form: OutcomeForm | None) -> dict:
    """Errors of a failed outcome form, keyed so the page shows them under the right action."""
    if form is None or not form.errors:
        return {}
    try:
        pk = int(request.POST.get("out-intervention", ""))
    except ValueError:
        pk = None
    return {
        "pk": pk, "outcome": form.errors.get("outcome", []), "note": form.errors.get("note", []),
        "other": list(form.non_field_errors()) + list(form.errors.get("intervention", [])),
    }


@login_required
def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = _customer_for(request, pk)
    action_form = InterventionForm(prefix="act")
    outcome_form = None
    if request.method == "POST":
        if request.POST.get("form") == "outcome":
            outcome_form = OutcomeForm(request.POST, prefix="out")
            if outcome_form.is_valid():
                target = Intervention.objects.filter(pk=outcome_form.cleaned_data["intervention"], customer=customer).first()
                if target is None:
                    outcome_form.add_error(None, "That action does not belong to this customer.")
                else:
                    try:
                        intervention_record_outcome(
                            intervention=target, by=request.user, outcome=outcome_form.cleaned_data["outcome"],
                            note=outcome_form.cleaned_data["note"],
                        )
                    except CrmError as error:
                        outcome_form.add_service_error(error)
                    else:
                        messages.success(request, f"Outcome recorded: {target.get_action_display()} → "
                                                  f"{Intervention.Outcome(outcome_form.cleaned_data['outcome']).label}.")
                        return redirect(reverse("crm-customer", args=[customer.pk]) + "#log-action")
        else:
            action_form = InterventionForm(request.POST, prefix="act")
            if action_form.is_valid():
                data = action_form.cleaned_data
                try:
                    created = intervention_create(
                        customer=customer, by=request.user, action=data["action"], note=data["note"],
                        follow_up_on=data["follow_up_on"], source=Intervention.Source.CRM, outcome=data["outcome"],
                    )
                except CrmError as error:
                    action_form.add_service_error(error)
                else:
                    outcome = f" → {created.get_outcome_display()}" if created.outcome else ""
                    messages.success(request, f"Logged: {created.get_action_display()}{outcome} for "
                                              f"{customer.name or customer.external_id}.")
                    # From a worklist row: back to the same list (filters, page), the message on top.
                    return redirect(_safe_next(request, reverse("crm-customer", args=[customer.pk]) + "#log-action"))

    kind = request.GET.get("kind", "")
    if kind not in Event.Kind.values:
        kind = ""
    try:
        shown = min(max(int(request.GET.get("events", TIMELINE_STEP)), TIMELINE_STEP), TIMELINE_MAX)
    except ValueError:
        shown = TIMELINE_STEP
    events, more = sv.customer_timeline(customer=customer, kind=kind, limit=shown)
    history = sv.customer_history(customer=customer)
    score = customer.latest_score
    value_at_risk = (Decimal(str(score.probability)) * customer.value).quantize(Decimal("0.01")) if score else None
    status = 400 if (request.method == "POST") else 200
    interventions_shown = sv.customer_interventions(customer=customer)
    alerts_shown = sv.customer_alerts(customer=customer)
    span = charts.score_history_span(history)
    markers = sv.customer_chart_markers(customer=customer, start=span[0], end=span[1],
                                        interventions=interventions_shown) if span else []
    outcome_errors = _outcome_errors(request, outcome_form)
    if outcome_errors and outcome_errors["pk"] not in {iv.pk for iv in interventions_shown}:
        outcome_errors["pk"] = None  # shown above the list instead of under one action
    return render(request, "crm/customer.html", {
        "customer": customer, "score": score, "value_at_risk": value_at_risk, "tenure": _tenure(customer),
        "history_chart": charts.score_history_chart(
            history, high=settings.CHURN_BAND_HIGH, medium=settings.CHURN_BAND_MEDIUM, markers=markers,
        ),
        "history_chart_narrow": charts.score_history_chart(
            history, high=settings.CHURN_BAND_HIGH, medium=settings.CHURN_BAND_MEDIUM, width=360, height=220,
            markers=markers,
        ),
        "history_count": len(history),
        "reasons": _reasons_for_display(score.reasons if score else None),
        "events": events, "more_events": more, "next_events": min(shown + TIMELINE_STEP, TIMELINE_MAX),
        "event_kind": kind, "event_kinds": Event.Kind.choices,
        "event_counts": sv.customer_event_counts(customer=customer),
        "interventions": interventions_shown, "outcome_errors": outcome_errors,
        "alerts": alerts_shown,
        "alert_silence": alert_silence_reason(customer=customer, alerts=alerts_shown),
        "suggestion": sl.next_best_action_for_page(customer=customer),
        "action_form": action_form,
        "outcome_choices": [c for c in Intervention.Outcome.choices if c[0]],
        "role": _role(request.user), "nav": "worklist",
    }, status=status)


# --- interventions ---------------------------------------------------------------------


@login_required
def interventions(request: HttpRequest) -> HttpResponse:
    owners = sv.owners_for_filter(user=request.user)
    form = InterventionFilterForm(request.GET or None, owners=owners)
    filters = sv.InterventionFilters()
    page = None
    if form.is_bound and not form.is_valid():
        # A filter that cannot be read lists nothing: the error next to the field says what to fix,
        # rather than an unfiltered list or "0 actions" that looks like an answer.
        filters = sv.InterventionFilters(follow_ups_due=request.GET.get("view") == "due")
    else:
        if form.is_bound:
            data = form.cleaned_data
            filters = sv.InterventionFilters(
                action=data["action"], outcome=data["outcome"], owner_id=data.get("owner"),
                date_from=data["date_from"], date_to=data["date_to"], follow_ups_due=data["view"] == "due",
            )
        page = Paginator(sv.intervention_list_visible(user=request.user, filters=filters),
                         INTERVENTIONS_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "crm/interventions.html", {
        "form": form, "page": page, "query": _query_without_page(request), "due_view": filters.follow_ups_due,
        "filtered": any(request.GET.get(key) for key in ("action", "outcome", "owner", "date_from", "date_to")),
        "due_count": sv.follow_ups_due_count(user=request.user), "today": timezone.localdate(),
        "role": _role(request.user), "nav": "interventions",
    })


# --- model report ----------------------------------------------------------------------

METRIC_COLUMNS = [
    ("roc_auc", "ROC AUC", True), ("pr_auc", "PR AUC", True), ("lift_at_10pct", "Lift @10%", True),
    ("capture_at_10pct", "Capture @10%", True), ("brier", "Brier", False), ("ece", "ECE", False),
    ("train_seconds", "Train s", None),
]
METRIC_DIGITS = {"lift_at_10pct": 2, "train_seconds": 0}


def _metric_text(key: str, value) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return f"{value:,.{METRIC_DIGITS.get(key, 3)}f}"


def _curve(family_results: dict, key: str, x: str, y: str) -> tuple[list, list]:
    curve = family_results.get(key) if isinstance(family_results, dict) else None
    if not isinstance(curve, dict):
        return [], []
    return list(curve.get(x) or []), list(curve.get(y) or [])


def _backtest_context(run) -> dict:
    if run is None:
        return {}
    results = run.results if isinstance(run.results, dict) else {}
    families = results.get("families") if isinstance(results.get("families"), dict) else {}
    families = {name: data for name, data in families.items() if isinstance(data, dict)}
    table = []
    for name, data in families.items():
        cells = []
        for key, _, higher_better in METRIC_COLUMNS:
            value = data.get(key)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            values = [d.get(key) for d in families.values() if isinstance(d.get(key), (int, float))]
            best = False
            if numeric and higher_better is not None and len(values) > 1:
                best = value == (max(values) if higher_better else min(values))
            cells.append({"value": _metric_text(key, value), "best": best})
        table.append({"name": name, "cells": cells})

    def series(key: str, x: str, y: str) -> list[charts.Series]:
        return [charts.Series(name, *_curve(data, key, x, y)) for name, data in families.items()]

    lift_series = []
    for name, data in families.items():
        xs, lifts = _curve(data, "lift", "fraction", "capture")
        lift_series.append(charts.Series(name, xs, lifts))
    hist_edges: list = []
    hist_counts = []
    for name, data in families.items():
        edges, counts = _curve(data, "score_hist", "edges", "counts")
        if edges and not hist_edges:
            hist_edges = edges
        if edges == hist_edges:
            hist_counts.append((name, counts))
    base_rate = run.churn_rate if run.churn_rate else None
    return {
        "families": table,
        "roc_chart": charts.line_chart(series("roc", "fpr", "tpr"), title="ROC curve: true vs false positive rate",
                                       x_label="False positive rate", y_label="True positive rate", diagonal=True),
        "pr_chart": charts.line_chart(series("pr", "recall", "precision"), title="Precision-recall curve",
                                      x_label="Recall", y_label="Precision", reference_y=base_rate),
        "calibration_chart": charts.line_chart(
            [charts.Series(s.name, s.xs, s.ys, points=True) for s in series("calibration", "mean_predicted", "fraction_positive")],
            title="Calibration: predicted vs observed churn", x_label="Mean predicted probability",
            y_label="Observed churn rate", diagonal=True),
        "lift_chart": charts.line_chart(lift_series, title="Capture: share of churners found in the top X% of scores",
                                        x_label="Share of customers contacted (by score)", y_label="Share of churners captured",
                                        diagonal=True),
        "hist_chart": charts.histogram(hist_edges, hist_counts, title="Distribution of predicted churn probability"),
        "extra": {k: v for k, v in results.items() if k != "families" and isinstance(v, (int, float, str))},
    }


def _money(value: float) -> str:
    return f"{value:,.0f}"


def _profit_context(report: sl.ProfitReport | None) -> dict:
    """The profit-chosen threshold next to the one in use, in words and as a curve."""
    if report is None:
        return {}
    choice = report.choice
    xs, ys = [p.threshold for p in choice.curve], [p.expected_profit for p in choice.curve]
    gain = choice.gain_over_current or 0.0
    if choice.current_threshold is not None and abs(choice.threshold - choice.current_threshold) < 1e-9:
        verdict = "The line in use is the most profitable one."
    elif gain > 0.5:
        verdict = (f"Moving the line from {choice.current_threshold:.2f} to {choice.threshold:.2f} adds an expected "
                   f"{_money(gain)} ({choice.n_alerted - choice.current_n_alerted:+,} customers alerted).")
    else:
        verdict = (f"Moving the line from {choice.current_threshold:.2f} to {choice.threshold:.2f} changes the "
                   f"expected profit by less than 1.")
    return {
        "report": report, "choice": choice,
        "best_profit": _money(choice.expected_profit), "current_profit": _money(choice.current_expected_profit or 0.0),
        "verdict": verdict,
        "success_pct": f"{100 * choice.success_rate:.0f}%", "value_share_pct": f"{100 * choice.value_horizon_share:.0f}%",
        "action_cost": f"{choice.action_cost:,.2f}",
        "chart": charts.profit_curve_chart(xs, ys, chosen=choice.threshold, in_use=choice.current_threshold),
        "chart_narrow": charts.profit_curve_chart(xs, ys, chosen=choice.threshold, in_use=choice.current_threshold,
                                                  width=360, height=240),
    }


@login_required
def model_report(request: HttpRequest) -> HttpResponse:
    versions = sv.model_versions_for_report()
    run = sv.backtest_latest()
    metric_keys = [key for key, _, _ in METRIC_COLUMNS]
    for version in versions:
        metrics = version.metrics if isinstance(version.metrics, dict) else {}
        version.metric_cells = [_metric_text(key, metrics.get(key)) for key in metric_keys]
    loop = sl.loop_report(user=request.user)
    window = sv.backtest_window(horizon_days=settings.CHURN_HORIZON_DAYS)
    return render(request, "crm/models.html", {
        "versions": versions, "run": run, "metric_columns": METRIC_COLUMNS, "bt": _backtest_context(run),
        "bt_window": window, "bt_is_latest": bool(run and window.latest
                                                   and run.as_of.astimezone(dt_timezone.utc).date() == window.latest),
        "loop": loop, "escalation_days": settings.CHURN_ESCALATION_DAYS, "outcome_days": settings.CHURN_OUTCOME_DAYS,
        "profit": _profit_context(sl.profit_threshold_current()) if loop else {},
        "own_funnel": [] if loop or _role(request.user) != "owner" else sl.funnel_for_owner(user=request.user),
        "can_promote": request.user.is_superuser, "role": _role(request.user), "nav": "models",
    })


METRIC_NAMES = {
    CHAMPION_METRIC: "PR-AUC on active customers, the measure the champion rule compares",
    "pr_auc": "PR-AUC on all customers",
}
FALLBACK_NOTE = ("The champion rule's own figure, PR-AUC on active customers, is missing for one of the two, so this "
                 "compares PR-AUC on all customers.")
PROMOTION_TABLE = [
    (CHAMPION_METRIC, "PR AUC, active customers", True), ("pr_auc", "PR AUC", True), ("roc_auc", "ROC AUC", True),
    ("brier", "Brier", False), ("ece", "ECE", False),
]


def _promotion_words(check: sv.PromotionCheck) -> dict:
    """What promoting means for this version, in plain words: above all whether it is weaker."""
    version, champion = check.version, check.champion
    if version.is_champion:
        return {"headline": f"{version.name} is already the champion."}
    if champion is None:
        return {"headline": f"There is no champion yet: {version.name} will score every customer from the next "
                            "scoring run."}
    words: dict = {"weaker": check.weaker}
    if not check.metric:
        words["headline"] = (f"{version.name} cannot be compared with the champion {champion.name}: the two have no "
                             "validation PR-AUC in common.")
    elif check.weaker:
        gap = -check.difference
        share = f", {gap / check.champion_value:.0%} worse" if check.champion_value else ""
        words["headline"] = f"{version.name} is weaker than the champion {champion.name} on validation."
        words["detail"] = (f"It scores {check.value:.3f} against {check.champion_value:.3f} "
                           f"({METRIC_NAMES[check.metric]}): {gap:.3f} lower{share}. It would find fewer of the "
                           "customers who are about to leave, and the weekly training would keep "
                           f"{champion.name}.")
    elif check.difference == 0:
        words["headline"] = (f"{version.name} scores the same as the champion {champion.name} on validation: "
                             f"{check.value:.3f} ({METRIC_NAMES[check.metric]}).")
    else:
        words["headline"] = (f"{version.name} scores {check.value:.3f} against {check.champion_value:.3f} for the "
                             f"champion {champion.name} on validation ({METRIC_NAMES[check.metric]}): "
                             f"{check.difference:.3f} higher.")
    notes = [FALLBACK_NOTE] if check.metric and check.metric != CHAMPION_METRIC else []
    if check.metric and not check.same_data:
        notes.append("The two were validated on different data (trained to different dates or for another "
                     "horizon), so the figures compare only roughly; the weekly training compares a challenger "
                     "with the champion on the same customers and promotes it only when it is clearly better.")
    if notes:
        words["note"] = " ".join(notes)
    return words


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def model_promote(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what promoting this version would change, and a confirm box; POST with the box ticked: promote."""
    if not request.user.is_superuser:
        raise PermissionDenied("Only an admin can promote a model version.")
    version = ModelVersion.objects.filter(pk=pk).first()
    if version is None:
        raise Http404("No such model version.")
    form = PromoteForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            from crm_plugin.scoring.services import model_version_promote  # loads the ML stack only when needed

            model_version_promote(version=version, by=request.user)
        except CrmError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"{version.name} is now the champion; the next scoring run uses it.")
        return redirect("crm-models")
    check = sv.model_version_promotion_check(version=version)
    rows = [{"label": label, "value": _metric_text(key, (version.metrics or {}).get(key)),
             "champion": _metric_text(key, (check.champion.metrics or {}).get(key)) if check.champion else None,
             "higher_better": higher_better} for key, label, higher_better in PROMOTION_TABLE]
    return render(request, "crm/model_promote.html", {
        "version": version, "check": check, "words": _promotion_words(check), "form": form, "rows": rows,
        "role": _role(request.user), "nav": "models",
    }, status=400 if form.is_bound else 200)


# --- impact: are the alerts working? ---------------------------------------------------


def _weekly_chart(weeks: list[sl.WeekRow], *, narrow: bool = False):
    series = [
        charts.Series("Alerts sent", [], [w.alerts_sent for w in weeks], color="#0072B2"),
        charts.Series("Actions logged", [], [w.actions for w in weeks], color="#E69F00"),
        charts.Series("Retained", [], [w.retained for w in weeks], color="#009E73"),
        charts.Series("Churned", [], [w.churned for w in weeks], color="#D55E00"),
    ]
    labels = [w.label for w in weeks]
    if narrow:
        return charts.weekly_counts_chart(labels, series, width=360, height=220, label_every=3)
    return charts.weekly_counts_chart(labels, series, label_every=2)


@login_required
def impact(request: HttpRequest) -> HttpResponse:
    """Are the alerts working: the measured lift, the funnel per owner, revenue kept, week by week."""
    report = sl.impact_report(user=request.user)
    if report is None:
        own = " Your own alerts, actions and outcomes are on the Models page." if _role(request.user) == "owner" else ""
        raise PermissionDenied("This page compares every owner's book, so it is for managers and staff." + own)
    return render(request, "crm/impact.html", {
        "impact": report, "loop": report.loop, "weekly_chart": _weekly_chart(report.weeks),
        "weekly_chart_narrow": _weekly_chart(report.weeks, narrow=True),
        "escalation_days": settings.CHURN_ESCALATION_DAYS, "outcome_days": report.loop.outcome_days,
        "min_n": settings.UPLIFT_MIN_N, "role": _role(request.user), "nav": "impact",
    })
