"""The closed loop computed ahead of the pages: the report and the next-best-action model, stored.

Reading every alert episode and fitting the next-best-action model takes seconds on a large book
(and grows with the alerts), so no web request or Slack command does it. The daily job stores a
`LoopSnapshot` after the alert policy; when the loop's data changes during the day (an action
logged, an outcome recorded) a request queues `crm.loop_refresh` and is answered from the
snapshot it has meanwhile.
"""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from crm_plugin.errors import CrmError
from crm_plugin.loop.report import (
    ProfitReport,
    closed_loop_compute,
    loop_data_fingerprint,
    profit_fingerprint,
    profit_threshold_build,
)
from crm_plugin.models import LoopSnapshot
from mlcore.uplift import NextBestActionModel

SIGNING_SALT = "crm_plugin.loop.snapshot"
# Older snapshots are deleted; a few are kept so a page reading one while a refresh lands is unaffected.
SNAPSHOTS_KEPT = 3


@dataclass(frozen=True)
class LoopComputed:
    """What a snapshot stores besides the JSON report: the fitted model and the profit threshold
    (with the fingerprint of the scores and settings it was computed from)."""

    model: NextBestActionModel
    profit: ProfitReport | bool
    profit_fingerprint: str


def _signature(data: bytes) -> str:
    return salted_hmac(SIGNING_SALT, data, algorithm="sha256").hexdigest()


def closed_loop_refresh(*, as_of: datetime | None = None, model: NextBestActionModel | None = None) -> LoopSnapshot:
    """Compute the closed-loop report and fit the next-best-action model once, and store both.

    `model`: the next-best-action model when the caller has just fitted it (the daily job, for the
    alert policy): stored as it is rather than fitted a second time.

    The fingerprint is taken before the data is read: a change while it is computed makes the new
    snapshot stale at once (and so refreshed again) instead of being missed.
    """
    fingerprint, scores_fingerprint = loop_data_fingerprint(), profit_fingerprint()
    as_of = as_of or timezone.now()
    started = time.perf_counter()
    report, model = closed_loop_compute(as_of=as_of, model=model)
    # The profit threshold reads every customer's latest score: linear in the customers, so it is
    # computed here too rather than by the first model report after scoring.
    computed = LoopComputed(model=model, profit=profit_threshold_build(), profit_fingerprint=scores_fingerprint)
    data = pickle.dumps(computed, protocol=pickle.HIGHEST_PROTOCOL)
    with transaction.atomic():
        snapshot = LoopSnapshot.objects.create(
            as_of=as_of, fingerprint=fingerprint, report=report, model=data, model_signature=_signature(data),
            seconds=round(time.perf_counter() - started, 3))
        keep = LoopSnapshot.objects.order_by("-pk").values_list("pk", flat=True)[:SNAPSHOTS_KEPT]
        LoopSnapshot.objects.exclude(pk__in=list(keep)).delete()
    return snapshot


def loop_snapshot_contents(*, snapshot: LoopSnapshot) -> LoopComputed:
    """The snapshot's fitted model and profit threshold. Only bytes signed with this deployment's
    SECRET_KEY are unpickled: write access to the table alone must not be a way to run code in the
    web process."""
    data = bytes(snapshot.model)
    if not constant_time_compare(_signature(data), snapshot.model_signature):
        raise CrmError(f"closed-loop snapshot #{snapshot.pk} fails its signature; it is ignored.",
                       code="bad_signature")
    return pickle.loads(data)  # noqa: S301 - signed above
