"""The client's address for sign-in throttling, also behind the reverse proxy production runs behind."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or with LOGIN_TRUSTED_PROXIES = N the N-th address from the right of X-Forwarded-For.

    Each proxy we run appends the address it saw; anything left of those was written by the client
    and can be forged, so the number of our own proxies decides which entry to believe.
    """
    proxies = settings.LOGIN_TRUSTED_PROXIES
    if proxies:
        chain = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(chain) >= proxies:
            return chain[-proxies]
    return request.META.get("REMOTE_ADDR")
