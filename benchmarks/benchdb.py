"""What the PostgreSQL benchmarks share: a database of their own, and Django set up against it."""
from __future__ import annotations

import os
import sys
from urllib.parse import urlparse


def bench_database_url(default: str) -> str:
    """BENCH_DATABASE_URL, else `default`. The benchmarks rebuild their database, so a name without
    "bench" in it is refused rather than wiped."""
    url = os.environ.get("BENCH_DATABASE_URL", default)
    if "bench" not in urlparse(url).path:
        sys.exit(f"refusing to rebuild {url!r}: the database name must contain 'bench'")
    return url


def ensure_database(url: str) -> None:
    """Create the database named in `url` if it does not exist yet (connecting to `postgres`)."""
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str, *, migrate: bool = False, **env: str) -> None:
    """Django against `url` with production-like settings (no DEBUG query log, tasks in-process)."""
    os.environ.update({"DATABASE_URL": url, "DEBUG": "false", **env})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("CELERY_BROKER_URL", None)
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
