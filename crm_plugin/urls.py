"""CRM web views."""
urlpatterns: list = []
