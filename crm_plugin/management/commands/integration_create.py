"""`manage.py integration_create NAME [--rotate-token]`: an account for a shop feed, with its API token.

The token alone goes to stdout, so a script can capture it; what happened goes to stderr.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from crm_plugin.errors import CrmError
from crm_plugin.api.integrations import integration_create


class Command(BaseCommand):
    help = ("Create (or find) an integration user allowed to POST /api/events/ and print its API token. "
            "Running it again prints the same token; --rotate-token replaces it.")

    def add_arguments(self, parser):
        parser.add_argument("name", help="user name of the integration, e.g. shop-feed")
        parser.add_argument("--rotate-token", action="store_true",
                            help="replace the token (the old one stops working at once), e.g. after a leak")

    def handle(self, *args, name: str, rotate_token: bool, **options):
        try:
            access = integration_create(name=name, rotate_token=rotate_token)
        except CrmError as exc:
            raise CommandError(str(exc)) from None
        user = access.user.get_username()
        if access.created:
            note = f"Created integration user {user!r}; it may import events through the API and cannot sign in."
        elif rotate_token:
            note = f"Integration user {user!r} exists; this is its new token, the old one no longer works."
        elif access.token_created:
            note = f"Integration user {user!r} exists and had no token; this is its new one."
        else:
            note = f"Integration user {user!r} exists; this is its current token."
        self.stderr.write(note)
        self.stdout.write(access.token)
