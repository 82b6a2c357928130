"""The one error type that services raise for expected failures.

Views, the API, the Slack bot and management commands all turn it into a clear message.
"""
from __future__ import annotations


class CrmError(Exception):
    """An expected failure with a message a user can act on.

    `problems` carries itemised details (for example one entry per bad import row).
    """

    def __init__(self, message: str, *, problems: list[dict] | None = None, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        self.code = code

    def __str__(self) -> str:
        return self.message
