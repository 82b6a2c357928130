"""Celery tasks for training and scoring: thin adapters over the ML services, safe to retry.

Scoring writes upsert on (customer, model_version, as_of), so a retried chunk rewrites the same rows.
Routes (config/settings.py): mlcore.score_* -> queue `score`, mlcore.train_* -> queue `train`. The
names keep their `mlcore.` prefix: beat schedules and messages already queued name them.
"""
from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings

from crm_plugin.scoring.retention import churn_scores_prune
from crm_plugin.scoring.services import (
    churn_scores_compute_chunk, events_encoder_pretrain, model_train_all, model_train_scheduled, scoring_run_fail,
    scoring_run_finish,
)


def as_of_from_text(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@shared_task(name="mlcore.score_chunk", acks_late=True, max_retries=2, default_retry_delay=30)
def score_chunk(run_id: int, customer_ids: list[int]) -> dict:
    try:
        return churn_scores_compute_chunk(run_id=run_id, customer_ids=customer_ids)
    except Exception as exc:
        # The chord will not close the run: say why now rather than when its lease runs out.
        scoring_run_fail(run_id=run_id, error=f"a chunk of {len(customer_ids)} customers failed: {exc}")
        raise


@shared_task(name="mlcore.score_finish")
def score_finish(chunk_results: list[dict], run_id: int) -> int:
    """The chord's callback: the run is done; returns its id to whatever is chained after it."""
    return scoring_run_finish(run_id=run_id, results=chunk_results).pk


@shared_task(name="mlcore.train_models")
def train_models(as_of: str | None = None, families: list[str] | None = None,
                 max_train_minutes: float | None = None) -> list[int]:
    """Train, register and maybe promote; returns the new ModelVersion ids."""
    return [v.pk for v in model_train_all(as_of=as_of_from_text(as_of), families=families,
                                          max_train_minutes=max_train_minutes)]


@shared_task(name="mlcore.train_weekly")
def train_weekly() -> list[int]:
    """Beat, Sundays: pretrain the behaviour encoder when a family needs it, then train and maybe promote."""
    return [v.pk for v in model_train_scheduled(families=list(settings.ML_TRAIN_FAMILIES),
                                                max_train_minutes=settings.ML_BERT_MAX_TRAIN_MINUTES)]


@shared_task(name="mlcore.train_events_encoder")
def train_events_encoder(as_of: str | None = None, max_train_minutes: float | None = None) -> int:
    """Masked-event pretraining of the behaviour BERT on every customer (queue `train`); returns the version id."""
    return events_encoder_pretrain(as_of=as_of_from_text(as_of), max_train_minutes=max_train_minutes).pk


@shared_task(name="crm.scores_prune")
def scores_prune() -> str:
    """Beat, daily: thin the scores that crossed the daily window lately to a score a week
    (crm_plugin/scoring/retention.py); `manage.py scores_prune` looks at the whole history."""
    return str(churn_scores_prune(lookback_days=settings.SCORE_PRUNE_LOOKBACK_DAYS))
