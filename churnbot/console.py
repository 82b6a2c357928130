"""The console backend: without SLACK_BOT_TOKEN, alerts are printed as readable text and recorded."""
from __future__ import annotations

import sys
import time

from churnbot.blocks import alert_console_text
from crm_plugin.models import Alert

CONSOLE_CHANNEL = "console"


def console_post(*, alert: Alert, digest_items: list[Alert]) -> tuple[str, str]:
    """Print the message; return (channel, ts) like chat.postMessage would."""
    sys.stdout.write(alert_console_text(alert, digest_items=digest_items) + "\n\n")
    sys.stdout.flush()
    return CONSOLE_CHANNEL, f"{time.time():.6f}"
