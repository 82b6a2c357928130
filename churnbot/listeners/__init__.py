"""Bolt listeners, grouped by what Slack sends: slash commands, block actions, view submissions."""
