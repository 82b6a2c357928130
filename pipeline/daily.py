"""The daily job as one sequence of steps, run the same way by `run_daily` and by beat.

1. a champion to score with (a first, time-budgeted training when there is none);
2. scores for every customer: chunks as a Celery chord on the `score` queue;
3. when the chord's callback has closed the run (committed), `daily_after_scoring`: the alert
   policy over the run's scores, escalations of unanswered alerts, follow-up questions that are
   due, delivery of everything pending (Slack, or the console without a token), and the closed
   loop (lift, funnel, next-best-action model) computed and stored for the pages and Slack.

With a broker, step 3 is chained after the chord, so a worker runs it when scoring finishes;
`run_daily` waits for it (bounded), beat does not. In-process (eager) everything runs in order.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from celery import current_app
from celery.canvas import Signature
from django.conf import settings
from django.utils import timezone

from churnbot.tasks import alerts_queue_pending
from crm_plugin.models import ChurnScore, ModelVersion, ScoringRun
from crm_plugin.alerts.escalations import alert_escalations_create
from crm_plugin.alerts.follow_ups import alert_follow_ups_create
from crm_plugin.alerts.policy import alert_policy_apply
from crm_plugin.loop.report import next_best_action_model
from crm_plugin.loop.services import closed_loop_refresh
from crm_plugin.scoring.services import champion_get, churn_scores_riskiest, model_train_all
from crm_plugin.scoring.runs import scoring_run_start, scoring_run_wait

logger = logging.getLogger(__name__)


@dataclass
class DailyResult:
    trained: list[ModelVersion]
    run: ScoringRun
    after: dict = field(default_factory=dict)  # daily_after_scoring's summary; empty when not waited for
    riskiest: list[ChurnScore] = field(default_factory=list)


def _quiet(message: str) -> None:
    """Where a worker runs the steps nobody reads along; the task's return value is logged instead."""


def daily_after_scoring(*, run_id: int, say: Callable[[str], None] = _quiet) -> dict:
    """Steps after a finished scoring run: alert policy, escalations, follow-ups, delivery.

    Idempotent: the policy creates an alert once per customer and day, escalations and
    follow-ups carry idempotency keys, delivery claims each row. A run that did not finish is skipped.
    """
    run = ScoringRun.objects.get(pk=run_id)
    if run.status != ScoringRun.Status.DONE:
        logger.warning("scoring run %s is %s: no alerts from it", run.pk, run.status)
        return {"skipped": f"scoring run #{run.pk} is {run.status}"}
    # The next-best-action model is fitted once, on the episodes whose outcome is known at the
    # run's cutoff: today's new alerts have none yet, so the policy's suggestions and the stored
    # loop read the same model.
    model = next_best_action_model(as_of=run.as_of)
    policy = alert_policy_apply(as_of=run.as_of, next_best_action=model)
    say(f"alert policy: {policy}")
    escalations = alert_escalations_create(as_of=run.as_of)
    follow_ups = alert_follow_ups_create(today=timezone.localdate())
    if escalations.escalated or follow_ups:
        say(f"escalations: {escalations.escalated}, follow-up questions: {len(follow_ups)}")
    queued = alerts_queue_pending()  # in-process, the console backend prints each DM here
    say(f"alerts to deliver: {queued}")
    # After the policy and escalations (their alerts are in the funnel): the lift, the funnel and
    # the fitted next-best-action model that pages and Slack read, so none of them computes it.
    loop = closed_loop_refresh(model=model)
    return {"run": run.pk, "policy": str(policy), "escalated": escalations.escalated,
            "follow_ups": len(follow_ups), "queued": queued, "loop_seconds": loop.seconds}


def daily_job_run(*, then: Signature, as_of: dt.datetime | None = None, stdout=None,
                  families: list[str] | None = None, bert_max_train_minutes: float | None = None, top: int = 10,
                  wait: bool = True) -> DailyResult:
    """Run the daily job; `then` (the task running `daily_after_scoring`) follows the scoring run.

    Call it through `pipeline.tasks.daily_job`, which supplies `then`. With a broker, `then` is
    chained after the scoring chord and a worker runs it; with wait=False (the beat task) this
    returns once scoring is enqueued. In-process (no broker) the same steps run here, in order.
    """
    def say(message: str) -> None:
        if stdout is not None:
            stdout.write(message + "\n")
        else:
            logger.info(message)

    # Step 1: a champion to score with; the first training is time-budgeted so `make demo` stays short.
    trained: list[ModelVersion] = []
    if champion_get() is None:
        families = list(families or settings.ML_DAILY_FAMILIES)
        minutes = bert_max_train_minutes or settings.ML_DAILY_BERT_MAX_TRAIN_MINUTES
        budget = (f" (BERT fine-tuning budget {minutes:g} min)" if any(f.startswith("bert") for f in families)
                  else " (BERT not in ML_DAILY_FAMILIES: `manage.py train` adds it later)")
        say(f"no champion yet: training {', '.join(families)}{budget}")
        trained = model_train_all(as_of=as_of, families=families, max_train_minutes=minutes, stdout=stdout)

    # Step 2: score everyone (a chord on the `score` queue); with a broker, step 3 is chained after it.
    in_process = current_app.conf.task_always_eager
    run, result = scoring_run_start(as_of=as_of, then=None if in_process else then, check_workers=wait)
    if not (wait or in_process):
        say(f"scoring run #{run.pk} as of {run.as_of:%Y-%m-%d} enqueued; alerts follow when it finishes")
        return DailyResult(trained=trained, run=run)
    after = scoring_run_wait(run=run, result=result) or {}
    run.refresh_from_db()
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    say(f"scored {run.n_customers} customers with {run.model_version.name} as of {run.as_of:%Y-%m-%d} "
        f"in {seconds:.1f}s ({run.n_encoded} texts encoded)")

    # Step 3: the steps after scoring: here in-process, else what the worker reported.
    if in_process:
        after = daily_after_scoring(run_id=run.pk, say=say)
    elif "policy" in after:
        say(f"alert policy: {after['policy']}")
        if after["escalated"] or after["follow_ups"]:
            say(f"escalations: {after['escalated']}, follow-up questions: {after['follow_ups']}")
        say(f"alerts to deliver: {after['queued']}")
    return DailyResult(trained=trained, run=run, after=after, riskiest=churn_scores_riskiest(run=run, limit=top))
