"""Run the Slack app over Socket Mode, for teams without a public URL for /slack/events."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from slack_bolt.adapter.socket_mode import SocketModeHandler

from churnbot.bolt import bolt_app


class Command(BaseCommand):
    help = "Connect the Slack app over Socket Mode (needs SLACK_BOT_TOKEN and an app-level SLACK_APP_TOKEN)."

    def handle(self, *args, **options) -> None:
        if not settings.SLACK_BOT_TOKEN:
            raise CommandError("SLACK_BOT_TOKEN is not set; see docs/slack.md.")
        if not settings.SLACK_APP_TOKEN or not settings.SLACK_APP_TOKEN.startswith("xapp-"):
            raise CommandError("SLACK_APP_TOKEN (an app-level token, xapp-…, scope connections:write) is not set; "
                               "see docs/slack.md.")
        app = bolt_app(socket_mode=True)
        self.stdout.write("Connecting to Slack over Socket Mode; Ctrl-C stops.")
        SocketModeHandler(app, settings.SLACK_APP_TOKEN).start()
