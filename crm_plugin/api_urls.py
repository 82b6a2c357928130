"""REST API routes (DRF). Every endpoint needs authentication."""
urlpatterns: list = []
