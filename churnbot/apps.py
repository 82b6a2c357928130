"""The Slack bot."""
from django.apps import AppConfig


class ChurnbotConfig(AppConfig):
    name = "churnbot"
    verbose_name = "Slack bot"
