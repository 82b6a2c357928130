"""The daily job as a clear sequence of steps: a champion, scores for everyone, alerts, delivery."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from churnbot.delivery import alerts_deliver_pending
from crm_plugin.models import ChurnScore, ModelVersion, ScoringRun
from crm_plugin.alerts.services import alert_escalations_create, alert_follow_ups_create, alert_policy_apply
from crm_plugin.scoring.services import champion_get, churn_scores_compute, churn_scores_riskiest, model_train_all


@dataclass
class DailyResult:
    trained: list[ModelVersion]
    run: ScoringRun
    riskiest: list[ChurnScore] = field(default_factory=list)


def daily_job_run(*, as_of: dt.datetime | None = None, stdout=None, families: list[str] | None = None,
                  bert_max_train_minutes: float | None = None, top: int = 10) -> DailyResult:
    """Train a first champion if there is none (time-budgeted), score every customer, return the riskiest."""
    def say(message: str) -> None:
        if stdout is not None:
            stdout.write(message + "\n")

    # Step 1: a champion to score with; the first training is time-budgeted so `make demo` stays short.
    trained: list[ModelVersion] = []
    if champion_get() is None:
        families = list(families or settings.ML_DAILY_FAMILIES)
        minutes = bert_max_train_minutes or settings.ML_DAILY_BERT_MAX_TRAIN_MINUTES
        budget = (f" (BERT fine-tuning budget {minutes:g} min)" if any(f.startswith("bert") for f in families)
                  else " (BERT not in ML_DAILY_FAMILIES: `manage.py train` adds it later)")
        say(f"no champion yet: training {', '.join(families)}{budget}")
        trained = model_train_all(as_of=as_of, families=families, max_train_minutes=minutes, stdout=stdout)

    # Step 2: score every customer with the champion (chunks as a Celery chord on the `score` queue).
    run = churn_scores_compute(as_of=as_of)
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    say(f"scored {run.n_customers} customers with {run.model_version.name} as of {run.as_of:%Y-%m-%d} "
        f"in {seconds:.1f}s ({run.n_encoded} texts encoded)")

    # Step 3: the riskiest customers with their reasons.
    riskiest = churn_scores_riskiest(run=run, limit=top)

    # Step 4: the alert policy over today's scores (with its control group), escalations of
    # unanswered alerts, follow-up questions that are due, then delivery of everything pending
    # (console backend without SLACK_BOT_TOKEN; after commit through Celery with a broker).
    policy = alert_policy_apply(as_of=run.as_of)
    say(f"alert policy: {policy}")
    escalations = alert_escalations_create(as_of=run.as_of)
    follow_ups = alert_follow_ups_create(today=timezone.localdate())
    if escalations.escalated or follow_ups:
        say(f"escalations: {escalations.escalated}, follow-up questions: {len(follow_ups)}")
    queued = alerts_deliver_pending()
    say(f"alerts to deliver: {queued}")
    return DailyResult(trained=trained, run=run, riskiest=riskiest)
