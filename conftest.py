"""Root test configuration: service checks, the real Celery worker, shared fixtures.

A test that needs a service (PostgreSQL, Redis, Chromium) skips with a printed reason
when it is absent; under CI (`CI=true`) that skip is a failure instead.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _one_core_per_test_process() -> None:
    """Under pytest-xdist with a process per core, pin each test process to its own core.

    torch, LightGBM and OpenMP size their thread pools from the cores a process may use, so two
    test processes each ran a thread per core: four busy threads on two cores, and model-fitting
    tests took four times as long as alone.
    """
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if 1 < len(cores) <= count:
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})


_one_core_per_test_process()


def service_missing(reason: str) -> None:
    """Skip the test (fail it under CI) because a service it needs is absent."""
    if IN_CI:
        pytest.fail(f"required service missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _tcp_open(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _media_and_models_in_tmp(settings, tmp_path):
    """Keep model artifacts and uploads of every test in its own temporary folder."""
    settings.MODEL_DIR = tmp_path / "models"
    settings.STORAGES = {
        **settings.STORAGES,
        "models": {**settings.STORAGES["models"], "OPTIONS": {"location": str(tmp_path / "models")}},
    }
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Factory-made users would otherwise spend most of the suite's time hashing passwords."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _test_client_login_passes_a_request(monkeypatch):
    """`client.login(username=, password=)` the way the sign-in page does it, request included.

    Sign-in throttling (django-axes) needs the request in authenticate(), and Django's test client
    passes none; force_login() does not authenticate and needs nothing.
    """
    from django.test.client import ClientMixin, RequestFactory

    login = ClientMixin.login

    def login_with_request(self, **credentials):
        credentials.setdefault("request", RequestFactory().post("/login/"))
        return login(self, **credentials)

    monkeypatch.setattr(ClientMixin, "login", login_with_request)


@pytest.fixture(autouse=True)
def _eager_celery():
    """Tasks run in-process unless a test asks for the real worker."""
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = True


@pytest.fixture
def require_postgres(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        service_missing("needs PostgreSQL: set DATABASE_URL=postgres://... (make test-pg, .ci/run)")


@pytest.fixture(scope="session")
def redis_url() -> str:
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        service_missing("needs Redis: set CELERY_BROKER_URL=redis://127.0.0.1:6379/15 (make test does)")
    if not _tcp_open(url, 6379):
        service_missing(f"Redis is not reachable at {url}")
    return url


@pytest.fixture(scope="session")
def worker_slack():
    """The loopback Slack Web API stand-in that the real worker posts to (its calls, its messages)."""
    from tests.churnbot.slack_standin import SlackStandin

    standin = SlackStandin().start()
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, redis_url, tmp_path_factory, worker_slack):
    """A real `celery worker` process on Redis, using the test database, posting to Slack at `worker_slack`.

    Tests that use it need `transactional_db` so the worker sees committed rows. Its settings
    come from its environment, as in production: a Slack app (the stand-in), logistic regression
    for every training it is asked for, and no control group.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        service_missing("a worker process needs a shared database: run the tests on PostgreSQL (DATABASE_URL)")
    db_name = connection.settings_dict["NAME"]
    parsed = urlparse(os.environ["DATABASE_URL"])
    worker_db_url = parsed._replace(path=f"/{db_name}").geturl()

    env = {**os.environ, "DATABASE_URL": worker_db_url, "CELERY_BROKER_URL": redis_url,
           "CELERY_RESULT_BACKEND": redis_url, "DJANGO_SETTINGS_MODULE": "config.settings",
           "MODEL_DIR": str(tmp_path_factory.mktemp("worker-models")),
           "SLACK_BOT_TOKEN": "xoxb-worker-test", "SLACK_SIGNING_SECRET": "worker-test-secret",
           "SLACK_API_BASE_URL": worker_slack.api_url, "SITE_URL": "https://crm.shop.example",
           "ML_TRAIN_FAMILIES": "logreg", "ML_DAILY_FAMILIES": "logreg", "CONTROL_GROUP_SHARE": "0"}
    log_path = ROOT / "var" / "test-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    celery_bin = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"
    proc = subprocess.Popen(
        [celery_bin, "-A", "config", "worker", "-Q", "default,score,train,slack", "-c", "2",
         "--pool", "prefork", "-l", "info", "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    from config.celery import app

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early; see {log_path}:\n{log_path.read_text()[-3000:]}")
            if app.control.ping(timeout=1.0):
                break
        else:
            raise RuntimeError(f"celery worker did not answer within 60 s; see {log_path}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def celery_worker(celery_worker_process, transactional_db, worker_slack):
    """Send tasks to the real worker for the length of one test (the Slack stand-in starts empty)."""
    from config.celery import app

    worker_slack.reset()
    app.conf.task_always_eager = False
    yield celery_worker_process
    app.conf.task_always_eager = True
