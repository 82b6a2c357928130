"""The CRM plugin: customers, their behaviour, scores, alerts and retention work."""
from django.apps import AppConfig


class CrmPluginConfig(AppConfig):
    name = "crm_plugin"
    verbose_name = "Churn CRM"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from crm_plugin import lookups  # noqa: F401 - registers `__any_of`
