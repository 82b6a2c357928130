"""Retention actions and their outcomes, logged from the CRM, Slack or the API."""
