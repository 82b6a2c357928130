"""`pipeline` is a Django app so that its tasks and the run_daily command are discovered."""
from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "Daily pipeline"
