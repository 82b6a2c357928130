"""A real Celery worker process on Redis runs a task and returns its result."""
from config.celery import ping


def test_real_worker_returns_task_result(celery_worker):
    result = ping.delay("hello from the test")
    assert result.get(timeout=30) == "hello from the test"
