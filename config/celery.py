"""The Celery app. Without CELERY_BROKER_URL tasks run in-process (eager), see settings."""
import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("churn")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # each installed app's tasks.py
app.autodiscover_tasks(["crm_plugin.scoring", "crm_plugin.loop"])  # crm_plugin keeps its tasks with the concept they serve


@app.task(name="config.ping")
def ping(value: str = "pong") -> str:
    """Round-trip check used by health checks and the worker test."""
    return value


@worker_init.connect
def share_cores_between_pool_processes(sender=None, **kwargs) -> None:
    """Give each pool process its share of the cores for torch (ML_TORCH_THREADS), inherited by the pool.

    Two processes scoring chunks side by side with a thread per core each were slower together
    than one process alone. An explicit ML_TORCH_THREADS is kept.
    """
    from django.conf import settings

    threads = settings.ML_TORCH_THREADS
    if not threads:
        concurrency = getattr(sender, "concurrency", None)
        concurrency = concurrency if isinstance(concurrency, int) and concurrency > 0 else 1
        threads = max(1, len(os.sched_getaffinity(0)) // concurrency)
    os.environ["ML_TORCH_THREADS"] = str(threads)
