"""mlcore as a Django app only so that its Celery tasks are discovered."""
from django.apps import AppConfig


class MlcoreConfig(AppConfig):
    name = "mlcore"
    verbose_name = "Churn models"
