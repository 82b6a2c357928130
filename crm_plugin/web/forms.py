"""Forms of the CRM pages: they parse input only; the services decide what is valid to do."""
from __future__ import annotations

from django import forms

from crm_plugin.errors import CrmError
from crm_plugin.formatting import day
from crm_plugin.models import ChurnScore, Customer, Intervention
from crm_plugin.web.selectors import WORKLIST_SORTS

ALL = [("", "All")]


STAGE_CHOICES = list(Customer.Stage.choices) + [("all", "All stages")]


class WorklistFilterForm(forms.Form):
    # Kept in the URL with the other filters, so a tab and an ordering can be bookmarked.
    stage = forms.ChoiceField(required=False, choices=STAGE_CHOICES, widget=forms.HiddenInput)
    sort = forms.ChoiceField(required=False, choices=[], widget=forms.HiddenInput)
    q = forms.CharField(required=False, label="Search", widget=forms.TextInput(attrs={"placeholder": "Name, id or email", "type": "search"}))
    owner = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Owner")
    band = forms.ChoiceField(required=False, choices=ALL + list(ChurnScore.Band.choices), label="Band")
    segment = forms.ChoiceField(required=False, label="Segment")
    rose = forms.BooleanField(required=False, label="Risk rose in the last 7 days")
    no_action = forms.BooleanField(required=False, label="No action yet (30 days)")

    def __init__(self, *args, owners=(), segments=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = ALL + [(o.pk, o.name) for o in owners]
        self.fields["segment"].choices = ALL + [(s, s.title()) for s in segments]
        self.fields["sort"].choices = [(k, k) for key in WORKLIST_SORTS for k in (key, f"-{key}")]
        if not owners:
            del self.fields["owner"]


class BulkForm(forms.Form):
    """The worklist's "with selected" bar: which customers, what to do, and for reassigning to whom."""

    do = forms.ChoiceField(choices=[("reassign", "Reassign"), ("snooze", "Snooze"), ("export", "Export")])
    owner = forms.IntegerField(required=False)  # who may move customers to whom: the service decides

    def selected(self) -> list[int]:
        """The ticked customers' ids; which of them the user may touch is the services' decision."""
        return [int(v) for v in self.data.getlist("customers") if str(v).isdigit()]


class InterventionFilterForm(forms.Form):
    view = forms.ChoiceField(required=False, choices=[("", "All actions"), ("due", "Follow-ups due")], widget=forms.HiddenInput)
    action = forms.ChoiceField(required=False, choices=ALL + list(Intervention.Action.choices))
    outcome = forms.ChoiceField(
        required=False,
        choices=ALL + [("pending", "Not recorded yet")] + [c for c in Intervention.Outcome.choices if c[0]],
    )
    owner = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, owners=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = ALL + [(o.pk, o.name) for o in owners]
        if not owners:
            del self.fields["owner"]

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            # Said next to "From", not answered with an empty list that reads as "nothing was done".
            self.add_error("date_from", f"After “To” ({day(end)}): pick a date on or before it.")
        return data


class PromoteForm(forms.Form):
    """The explicit yes a promotion needs: one tick, so it works without JavaScript."""

    confirm = forms.BooleanField(error_messages={"required": "Tick the box to confirm the promotion."})


class _ServiceErrorsMixin:
    """Put a CrmError from a service next to the field it is about."""

    error_fields: dict[str, str] = {}

    def add_service_error(self, error: CrmError) -> None:
        field = self.error_fields.get(error.code)
        self.add_error(field if field in self.fields else None, error.message)


class InterventionForm(_ServiceErrorsMixin, forms.Form):
    # Choice checks are left to the service so that Slack, the API and this page say the same thing.
    action = forms.CharField(error_messages={"required": "Choose what you did."}, widget=forms.Select(choices=[("", "Choose an action…")] + list(Intervention.Action.choices)))
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What did you do or agree?"}))
    outcome = forms.CharField(required=False, label="Outcome", widget=forms.Select(
        choices=[("", "Not known yet")] + [c for c in Intervention.Outcome.choices if c[0]]))
    follow_up_on = forms.DateField(required=False, label="Follow up on", widget=forms.DateInput(attrs={"type": "date"}))

    error_fields = {"invalid_action": "action", "note_too_long": "note", "follow_up_in_past": "follow_up_on",
                    "invalid_outcome": "outcome"}



class OutcomeForm(_ServiceErrorsMixin, forms.Form):
    intervention = forms.IntegerField(widget=forms.HiddenInput)
    outcome = forms.CharField(
        error_messages={"required": "Choose what came of it."},
        widget=forms.Select(choices=[("", "Choose an outcome…")] + [c for c in Intervention.Outcome.choices if c[0]])
    )
    note = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "Optional note"}))

    error_fields = {"invalid_outcome": "outcome", "note_too_long": "note"}
