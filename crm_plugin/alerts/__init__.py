"""Alerts: the policy that turns scores into outbox rows, their delivery states, snooze and "not a risk", follow-ups, escalations."""
