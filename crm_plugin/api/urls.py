"""REST API routes (DRF). Every endpoint needs authentication."""
from django.urls import path

from crm_plugin.api.events import EventBatchApi
from crm_plugin.api.loop import RetentionLiftApi

urlpatterns = [
    path("events/", EventBatchApi.as_view(), name="api-events"),
    path("lift/", RetentionLiftApi.as_view(), name="api-lift"),
]
