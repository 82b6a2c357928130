"""Scoring runs: open one, enqueue its chunks as a chord on the `score` queue, watch it, expire stale ones.

A run holds a lease (SCORING_LEASE_SECONDS) that every finished chunk renews. A run whose lease ran
out made no progress for that long - its worker or process died - and is marked failed, with the
reason, when the next run starts. While a run is making progress no second run is opened.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from celery import chord, current_app
from celery.canvas import Signature
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from kombu.utils.url import maybe_sanitize_url

from crm_plugin.scoring import selectors as selectors_ml
from crm_plugin.errors import CrmError
from crm_plugin.models import ScoringRun
from crm_plugin.scoring.services import as_of_aware, as_of_check, champion_get, model_version_load, scoring_run_fail
from crm_plugin.scoring.tasks import score_chunk, score_finish

logger = logging.getLogger(__name__)

SCORE_QUEUE = "score"


def scoring_runs_expire(*, now: datetime | None = None) -> list[int]:
    """Mark every running run whose lease ran out as failed, saying why; returns their ids."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.SCORING_LEASE_SECONDS)
    stale = ScoringRun.objects.filter(status=ScoringRun.Status.RUNNING).filter(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, started_at__lt=now - lease))
    expired = []
    for run in stale:
        last = (run.lease_expires_at - lease) if run.lease_expires_at else run.started_at
        scoring_run_fail(run_id=run.pk, error=f"stopped: no progress since {last:%Y-%m-%d %H:%M:%S} UTC, longer than the "
                      f"{settings.SCORING_LEASE_SECONDS} s lease (SCORING_LEASE_SECONDS); its worker or process "
                      f"died. Marked failed at {now:%Y-%m-%d %H:%M:%S} UTC.")
        expired.append(run.pk)
        logger.warning("scoring run %s had no progress since %s: marked failed", run.pk, last)
    return expired


def _broker_url() -> str:
    return maybe_sanitize_url(current_app.conf.broker_url or "")


def _broker_error(exc: BaseException) -> CrmError:
    return CrmError(f"cannot reach the Celery broker at {_broker_url()} ({exc}). Start it (Redis), or unset "
                    "CELERY_BROKER_URL to run tasks in-process; nothing was queued.", code="broker_unreachable")


def _stopped(run_id: int, exc: BaseException) -> BaseException:
    """Record why a run stopped (a no-op for a run already closed) and what to raise instead:
    a plain message for a broker that is down or any other failure; CrmError and Ctrl-C as they are."""
    scoring_run_fail(run_id=run_id, error=str(exc))
    if isinstance(exc, BrokerError):
        return _broker_error(exc)
    if isinstance(exc, CrmError) or not isinstance(exc, Exception):
        return exc
    return CrmError(f"scoring failed: {exc}")


def _queue_of(signature: Signature) -> str:
    route = current_app.amqp.router.route({}, signature.task)
    queue = route.get("queue")
    return getattr(queue, "name", None) or str(queue or current_app.conf.task_default_queue)


def _queues_with_workers() -> set[str]:
    replies = current_app.control.inspect(timeout=1.0).active_queues() or {}
    return {q.get("name") for queues in replies.values() for q in (queues or [])}


def _require_workers(queues: set[str]) -> None:
    """Wait up to CELERY_WORKER_WAIT_SECONDS for a worker on each queue; CrmError naming the missing ones."""
    try:
        with current_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
    except Exception as exc:  # kombu raises the transport's own errors here
        raise _broker_error(exc) from exc
    deadline = time.monotonic() + settings.CELERY_WORKER_WAIT_SECONDS
    while True:
        missing = queues - _queues_with_workers()
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    if missing:
        names = ", ".join(f"`{q}`" for q in sorted(missing))
        raise CrmError(
            f"no Celery worker consumes the {names} queue{'s' if len(missing) > 1 else ''} on {_broker_url()} "
            f"(waited {settings.CELERY_WORKER_WAIT_SECONDS} s, CELERY_WORKER_WAIT_SECONDS): start one, e.g. "
            f"`celery -A config worker -Q {','.join(sorted(missing))}` (docs/production.md), or unset "
            "CELERY_BROKER_URL to run in-process.", code="no_worker")


def scoring_run_start(*, as_of: datetime | None = None, chunk_size: int | None = None,
                      then: Signature | None = None, check_workers: bool = False) -> tuple[ScoringRun, AsyncResult]:
    """Open a run with the champion and enqueue its chunks; `then` is chained after the run is closed.

    The chord's callback closes the run and hands its id to `then` (the daily pipeline's next
    steps). The returned result is that of the last task. Eager Celery runs it all before returning.
    With `check_workers` (a caller that will wait), a missing broker or worker fails at once.
    """
    as_of = as_of_aware(as_of)
    champion = champion_get()
    if champion is None:
        raise CrmError("no champion model yet: run `python manage.py train` first")
    as_of_check(as_of)
    eager = current_app.conf.task_always_eager
    if check_workers and not eager:
        _require_workers({SCORE_QUEUE} | ({_queue_of(then)} if then is not None else set()))
    scoring_runs_expire()
    with transaction.atomic():
        live = ScoringRun.objects.select_for_update().filter(status=ScoringRun.Status.RUNNING).first()
        if live is not None:
            lease_end = live.lease_expires_at or live.started_at + timedelta(seconds=settings.SCORING_LEASE_SECONDS)
            raise CrmError(f"scoring run #{live.pk} (as of {live.as_of:%Y-%m-%d}, started {live.started_at:%H:%M} UTC) "
                           f"is still running. If its worker or process is gone, it is marked failed once it has made "
                           f"no progress until {lease_end:%H:%M:%S} UTC (SCORING_LEASE_SECONDS), and a new run can "
                           "start then.", code="run_in_progress")
        run = ScoringRun.objects.create(
            model_version=champion, as_of=as_of, n_customers=0,
            lease_expires_at=timezone.now() + timedelta(seconds=settings.SCORING_LEASE_SECONDS))
    try:
        # Refuse a broken champion before any work is queued (the run is recorded as failed, with why).
        # Verified for this run: in-process chunks reuse the check; each worker process does its own.
        model_version_load(version=champion, run_id=run.pk)
        ids = selectors_ml.customer_ids_with_history(before=as_of)  # distinct, in id order
        size = chunk_size or settings.SCORE_CHUNK_SIZE
        chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
        body = score_finish.s(run.pk) if then is None else score_finish.s(run.pk) | then
        result = chord([score_chunk.s(run.pk, chunk) for chunk in chunks], body).apply_async()
    except BaseException as exc:  # Ctrl-C included: the run must not stay `running`
        stopped = _stopped(run.pk, exc)
        if stopped is exc:
            raise
        raise stopped from exc
    run.refresh_from_db()
    return run, result


def scoring_run_wait(*, run: ScoringRun, result: AsyncResult, poll_seconds: float = 2.0):
    """Wait for a started run (and what is chained after it); returns the last task's result.

    Bounded by the run's lease: when no chunk finishes within SCORING_LEASE_SECONDS the run is
    marked failed and CrmError says so. A failed chunk fails the run with its error.
    """
    try:
        while True:
            try:
                return result.get(timeout=poll_seconds, disable_sync_subtasks=False, propagate=True)
            except ResultTimeout:
                pass
            run.refresh_from_db(fields=["status", "lease_expires_at", "error"])
            if run.status == ScoringRun.Status.FAILED:
                raise CrmError(f"scoring run #{run.pk} failed: {run.error}")
            if run.status == ScoringRun.Status.RUNNING and run.lease_expires_at and run.lease_expires_at < timezone.now():
                scoring_runs_expire()
                run.refresh_from_db(fields=["error"])
                raise CrmError(f"scoring run #{run.pk} {run.error}")
    except BaseException as exc:
        stopped = _stopped(run.pk, exc)
        if stopped is exc:
            raise
        raise stopped from exc


def churn_scores_compute(*, as_of: datetime | None = None, wait: bool = True, chunk_size: int | None = None) -> ScoringRun:
    """Score every customer with events before `as_of` with the champion, in chunks on the `score` queue.

    Chunks run as a Celery chord (in-process when Celery is eager). With wait=False (inside a
    task) it returns once enqueued; otherwise it waits, bounded as `scoring_run_wait` says.
    """
    run, result = scoring_run_start(as_of=as_of, chunk_size=chunk_size, check_workers=wait)
    if wait:
        scoring_run_wait(run=run, result=result)
        run.refresh_from_db()
    return run
