"""Models in use: training, registry and champion, verified artifacts, scoring runs and their Celery tasks."""
