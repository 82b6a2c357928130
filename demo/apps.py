"""The demo shop generator and the closed-loop simulation: commands over crm_plugin's services, no models."""
from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "Demo shop and simulation"
