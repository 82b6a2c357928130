"""Celery task of the closed loop: recompute the stored report and next-best-action model."""
from __future__ import annotations

from datetime import datetime

from celery import shared_task

from crm_plugin.loop.report import loop_data_fingerprint
from crm_plugin.loop.services import closed_loop_refresh
from crm_plugin.models import LoopSnapshot


@shared_task(name="crm.loop_refresh")
def loop_refresh(asked_at: str | None = None) -> int:
    """Queued by a page that found the stored snapshot stale or old. Several pages may ask for the
    same change: a snapshot computed since `asked_at` from the current data already answers them."""
    newest = LoopSnapshot.objects.order_by("-pk").values_list("pk", "fingerprint", "created_at").first()
    if (asked_at is not None and newest is not None and newest[2] >= datetime.fromisoformat(asked_at)
            and newest[1] == loop_data_fingerprint()):
        return newest[0]
    return closed_loop_refresh().pk
