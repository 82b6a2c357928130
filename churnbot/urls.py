"""The Slack endpoint."""
urlpatterns: list = []
