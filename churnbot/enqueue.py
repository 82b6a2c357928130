"""Queue Slack tasks once the current transaction commits, without letting a dead broker hold up the caller.

A button press or a delivery sweep has already saved what matters when it queues work; a broker
that is down must not turn that into a slow 500. So a publish is tried briefly, and when the
broker cannot take it the failure is logged and the work is left where the outbox sweep
(`churnbot.alerts_deliver_pending`) finds it: alert rows simply stay `pending`.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from celery import Task
from django.db import transaction
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

# One immediate retry covers a pooled broker connection gone stale (Redis restarted); more would keep
# a Slack button waiting past its 3 s. Each try is bounded by CELERY_BROKER_TRANSPORT_OPTIONS' timeouts.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def enqueue_after_commit(task: Task, *args: Any) -> None:
    """Queue `task(*args)` after the current transaction commits (at once outside a transaction)."""
    enqueue_many_after_commit(task, [args])


def enqueue_many_after_commit(task: Task, calls: Iterable[Sequence[Any]]) -> None:
    """Queue `task(*args)` for each args in `calls` after commit; stop at the first broker failure,
    since the rest would fail the same way, each after its own timeout."""
    calls = [tuple(args) for args in calls]
    if calls:
        transaction.on_commit(partial(_publish, task, calls))


def _publish(task: Task, calls: list[tuple]) -> int:
    for sent, args in enumerate(calls):
        try:
            # Nobody reads these results. Asking for one would make the Redis result backend subscribe
            # before publishing, and that retries for about 20 s when Redis is down.
            task.apply_async(args=args, ignore_result=True, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
        except OperationalError as exc:
            logger.warning("broker unavailable, %d %s task(s) not queued (%s); pending alerts go out with the "
                           "next sweep", len(calls) - sent, task.name, exc)
            return sent
    return len(calls)
