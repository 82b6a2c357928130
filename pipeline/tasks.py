"""Celery tasks of the daily pipeline (queue `default`): what beat starts every day.

`pipeline.daily_run` opens the day's scoring run; the chord's callback closes the run and
`pipeline.after_scoring` follows it. `mlcore.score_all` and `mlcore.score_daily` keep the names
that earlier beat schedules and queued messages use: scoring alone, and the whole daily job.
"""
from __future__ import annotations

from celery import shared_task

from crm_plugin.scoring.runs import churn_scores_compute
from crm_plugin.scoring.tasks import as_of_from_text
from pipeline.daily import DailyResult, daily_after_scoring, daily_job_run


def daily_job(**options) -> DailyResult:
    """The daily job with its after-scoring steps chained: `run_daily` (waits) and beat (does not) both run this."""
    return daily_job_run(then=after_scoring.s(), **options)


@shared_task(name="pipeline.daily_run")
def daily_run() -> int:
    """The daily job (beat, 05:00): trains a first champion if none, enqueues scoring; returns the run id."""
    return daily_job(wait=False).run.pk


@shared_task(name="pipeline.after_scoring")
def after_scoring(run_id: int) -> dict:
    """Chained after the scoring chord's callback, once the run is closed and committed."""
    return daily_after_scoring(run_id=run_id)


@shared_task(name="mlcore.score_daily")
def score_daily() -> int:
    return daily_run()


@shared_task(name="mlcore.score_all")
def score_all(as_of: str | None = None, chunk_size: int | None = None) -> int:
    """Open a scoring run and enqueue its chord (no alerts); returns the ScoringRun id without waiting."""
    return churn_scores_compute(as_of=as_of_from_text(as_of), wait=False, chunk_size=chunk_size).pk
