"""The Slack endpoint: commands, interactivity (buttons, modals) and events all arrive here."""
from django.urls import path

from churnbot.views import slack_events

app_name = "churnbot"
urlpatterns = [path("events", slack_events, name="events")]
