"""Celery tasks for training and scoring: thin adapters over crm_plugin.scoring.services, safe to retry.

Scoring writes upsert on (customer, model_version, as_of), so a retried chunk rewrites the same rows.
Routes (settings, `# --- ml ---`): mlcore.score_* -> queue `score`, mlcore.train_* -> queue `train`.
"""
from __future__ import annotations

import datetime as dt

from celery import shared_task


def _as_of(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@shared_task(name="mlcore.score_chunk", acks_late=True, max_retries=2, default_retry_delay=30)
def score_chunk(run_id: int, customer_ids: list[int]) -> dict:
    from crm_plugin.scoring.services import churn_scores_compute_chunk

    return churn_scores_compute_chunk(run_id=run_id, customer_ids=customer_ids)


@shared_task(name="mlcore.score_finish")
def scoring_run_finish(chunk_results: list[dict], run_id: int) -> int:
    from crm_plugin.scoring.services import scoring_run_finish as finish

    return finish(run_id=run_id, results=chunk_results).pk


@shared_task(name="mlcore.score_all")
def score_all(as_of: str | None = None, chunk_size: int | None = None) -> int:
    """Enqueue the chunks as a chord on the `score` queue and return the ScoringRun id (no waiting in a task)."""
    from crm_plugin.scoring.services import churn_scores_compute

    return churn_scores_compute(as_of=_as_of(as_of), wait=False, chunk_size=chunk_size).pk


@shared_task(name="mlcore.score_daily")
def score_daily() -> int:
    return score_all()


@shared_task(name="mlcore.train_models")
def train_models(as_of: str | None = None, families: list[str] | None = None,
                 max_train_minutes: float | None = None) -> list[int]:
    """Train, register and maybe promote; returns the new ModelVersion ids."""
    from crm_plugin.scoring.services import model_train_all

    return [v.pk for v in model_train_all(as_of=_as_of(as_of), families=families, max_train_minutes=max_train_minutes)]


@shared_task(name="mlcore.train_weekly")
def train_weekly() -> list[int]:
    from django.conf import settings

    return train_models(families=list(settings.ML_TRAIN_FAMILIES), max_train_minutes=settings.ML_BERT_MAX_TRAIN_MINUTES)
