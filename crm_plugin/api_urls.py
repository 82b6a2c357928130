"""REST API routes (DRF). Every endpoint needs authentication."""
from django.urls import path

from crm_plugin.apis import EventBatchApi

urlpatterns = [
    path("events/", EventBatchApi.as_view(), name="api-events"),
]
