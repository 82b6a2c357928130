"""Follow-up questions: "how did it go?" after a logged action's follow-up date."""
from __future__ import annotations

from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm_plugin.models import AccountOwner, Alert, Intervention


@transaction.atomic
def alert_follow_ups_create(*, today: date | None = None) -> list[Alert]:
    """Queue "how did it go?" questions for actions whose follow-up date has come. Once per action."""
    today = today or timezone.localdate()
    due = (
        Intervention.objects.select_for_update(of=("self",))
        .filter(follow_up_on__lte=today, follow_up_sent_at__isnull=True, outcome=Intervention.Outcome.PENDING)
        .select_related("customer", "customer__owner", "created_by")
    )
    created = []
    for intervention in due:
        owner = _owner_of_user(intervention.created_by) or intervention.customer.owner
        if owner is None:
            continue
        try:
            with transaction.atomic():
                alert, new = Alert.objects.get_or_create(
                    idempotency_key=f"follow_up:{intervention.pk}",
                    defaults=dict(customer=intervention.customer, owner=owner, kind=Alert.Kind.FOLLOW_UP, payload={
                        "intervention": intervention.pk, "action": intervention.action, "note": intervention.note[:500],
                        "logged_on": timezone.localdate(intervention.created_at).isoformat(),
                    }),
                )
        except IntegrityError:
            continue
        Intervention.objects.filter(pk=intervention.pk).update(follow_up_sent_at=timezone.now())
        if new:
            created.append(alert)
    return created


def _owner_of_user(user: AbstractBaseUser | None) -> AccountOwner | None:
    if user is None:
        return None
    return AccountOwner.objects.filter(user=user).first()
