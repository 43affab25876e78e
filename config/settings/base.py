"""Settings shared by every environment; each value can be set from the environment."""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str) -> dict[str, Any]:
    """Build a DATABASES entry with persistent connections; PostgreSQL only."""
    config: dict[str, Any] = dict(
        dj_database_url.parse(
            url,
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600),
            # A `SELECT 1` before a persistent connection's first use in each request
            # (a restarted server costs no request an error), or an empty query at each
            # checkout from the pool: one round trip per request, unless the socket check
            # below finds the connection plainly alive.
            conn_health_checks=env_bool("DATABASE_CONN_HEALTH_CHECKS", True),
        )
    )
    if config["ENGINE"] != "django.db.backends.postgresql":
        # Stock, outbox and idempotency rely on PostgreSQL: UPDATE ... FROM unnest,
        # SKIP LOCKED, partial unique indexes.
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL, not {url!r}.")
    if config["CONN_HEALTH_CHECKS"] and env_bool("DATABASE_CONN_HEALTH_CHECK_SOCKET", True):
        # The same check, its round trip only when the socket has something unread or
        # the connection's state is doubtful (core.db.backend).
        config["ENGINE"] = "core.db.backend"
    pooler = env_str("DATABASE_POOLER", "")
    if pooler == "pgbouncer":
        # PgBouncer in transaction mode hands each transaction (each statement, in
        # autocommit) to any server connection: nothing may outlive one. Server-side
        # cursors (.iterator()) are WITH HOLD cursors read over several statements, and
        # a prepared statement lives in the server connection that prepared it.
        config["DISABLE_SERVER_SIDE_CURSORS"] = True
        config.setdefault("OPTIONS", {})["prepare_threshold"] = None
    elif pooler:
        raise ImproperlyConfigured(f"DATABASE_POOLER must be empty or 'pgbouncer', not {pooler!r}.")
    if env_bool("DATABASE_POOL", False):
        # Under the ASGI server every request runs its database work in a thread of its
        # own: a pool per process lends connections instead of one per thread (Django
        # closes a pooled connection back into the pool, so no persistent ones).
        config["CONN_MAX_AGE"] = 0
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 10),
            "timeout": 10,
        }
    return config


SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-development-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # Kept until the Token scheme's removal: the access migration reads its table.
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_fsm",
    "core",
    "access",
    "inventory",
    "orders",
    "pricing",
    "payments",
    "fulfilment",
    "flows",
    "notifications",
    "events",
]

MIDDLEWARE = [
    # First: every answer is counted, those of the middleware below too.
    "core.middleware.RequestMetricsMiddleware",
    "core.middleware.RequestIdMiddleware",
    # Before anything reads the body: one size limit for every endpoint.
    "core.middleware.RequestBodyLimitMiddleware",
    "core.middleware.ProblemNotFoundMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "core.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Django's, with the message storage built only for a request that uses it (the admin).
    "core.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "access.middleware.RateLimitMiddleware",
    # After authentication: which database each request reads from.
    "core.read_routing.ReadRoutingMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": database_from_url(env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oms"))
}
# A streaming replica of the same database: reads that tolerate lag may go there
# (core.read_routing). Unset: everything reads from DATABASE_URL.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = database_from_url(DATABASE_REPLICA_URL)
    # A replica that does not answer sends reads to the primary, after this long at most
    # (a connection of its own, or one from its pool).
    _replica_timeout = env_int("DATABASE_REPLICA_CONNECT_TIMEOUT_SECONDS", 2)
    _replica_options = DATABASES["replica"].setdefault("OPTIONS", {})
    _replica_options["connect_timeout"] = _replica_timeout
    if "pool" in _replica_options:
        _replica_options["pool"]["timeout"] = _replica_timeout
    # Tests see the replica as the primary's test database (no second one is made).
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["config.db_router.PrimaryReplicaRouter"]
# What must reach PostgreSQL itself, not a pooler in transaction mode: the event
# listener's LISTEN lives in one session. Unset: the primary's DATABASES entry.
DATABASE_DIRECT_URL = env_str("DATABASE_DIRECT_URL", "")
DATABASE_DIRECT: dict[str, Any] = (
    dict(dj_database_url.parse(DATABASE_DIRECT_URL)) if DATABASE_DIRECT_URL else {}
)
# Past this lag every read goes to the primary; a user's reads stay there until the
# replica has replayed that user's last write (read-your-writes).
DATABASE_REPLICA_MAX_LAG_SECONDS = env_int("DATABASE_REPLICA_MAX_LAG_SECONDS", 10)
# Each process reads the replica's replay position and lag at most this often.
DATABASE_REPLICA_STATUS_SECONDS = float(env_str("DATABASE_REPLICA_STATUS_SECONDS", "1"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Request bodies: refused over this size (413) before anything reads them; Django's own
# limit agrees. JSON may nest this deep (arrays and objects), deeper is a 400.
REQUEST_BODY_MAX_BYTES = env_int("REQUEST_BODY_MAX_BYTES", 2_621_440)
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_BODY_MAX_BYTES
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 32)

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Who may call what: access.policy's table, for every view that does not set its own.
    "DEFAULT_PERMISSION_CLASSES": ["access.api.permissions.PolicyPermission"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["core.api.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.api.negotiation.ContentNegotiation",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.ProblemAutoSchema",
    "EXCEPTION_HANDLER": "core.api.exceptions.problem_exception_handler",
    "DATETIME_FORMAT": "iso-8601",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "oms API",
    "DESCRIPTION": (
        "Order management: checkout with stock reservation, order lifecycle, "
        "stock administration. Errors are application/problem+json with a stable code."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# One JSON object per line (LOG_FORMAT=json, the default) or plain text, each carrying
# the request id, user, order id, task id and outbox message id (core.log_context).
LOG_FORMAT = env_str("LOG_FORMAT", "json")
_LOG_CONTEXT = "%(request_id)s %(user)s %(order_id)s %(task_id)s %(outbox_message_id)s"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.log_context.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": f"%(asctime)s %(levelname)s %(name)s %(message)s {_LOG_CONTEXT}",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "plain": {"format": f"%(asctime)s %(levelname)s %(name)s %(message)s [{_LOG_CONTEXT}]"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# The shared cache (rate-limit counters): Redis when CACHE_REDIS_URL is set, otherwise
# each process counts on its own.
CACHE_REDIS_URL = env_str("CACHE_REDIS_URL", "")
CACHES: dict[str, dict[str, Any]] = {
    "default": (
        {
            "BACKEND": "core.cache.RedisCache",
            "LOCATION": CACHE_REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "oms"),
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
        if CACHE_REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# API keys.
API_KEY_LAST_USED_RESOLUTION = timedelta(
    seconds=env_int("API_KEY_LAST_USED_RESOLUTION_SECONDS", 60)
)
API_KEY_ROTATION_OVERLAP = timedelta(seconds=env_int("API_KEY_ROTATION_OVERLAP_SECONDS", 86400))
# Keep recognised keys in the shared cache for this long (0: off; needs CACHE_REDIS_URL,
# see access.services): a revoke reaches every process at once, other changes within it.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 0)
API_KEY_CACHE = "default"

# The product list with availability is kept in the shared cache for this long (0: off):
# the availability it shows may be that many seconds old. Checkout always checks stock in
# the database, so a stale list never oversells. Public data only: the same for every
# caller (orders are never cached).
PRODUCT_LIST_CACHE_SECONDS = env_int("PRODUCT_LIST_CACHE_SECONDS", 0)
PRODUCT_LIST_CACHE = "default"

# Rate limits per API key and per client IP, per class of endpoint (access.policy), over
# one window. Behind N proxies that append to X-Forwarded-For, set the count to N.
RATE_LIMIT_ENABLED = env_bool("RATE_LIMIT_ENABLED", True)
RATE_LIMIT_CACHE = "default"
RATE_LIMIT_WINDOW_SECONDS = env_int("RATE_LIMIT_WINDOW_SECONDS", 60)
RATE_LIMITS = {
    "reads": {
        "key": env_int("RATE_LIMIT_READS_PER_KEY", 1200),
        "ip": env_int("RATE_LIMIT_READS_PER_IP", 2400),
    },
    "writes": {
        "key": env_int("RATE_LIMIT_WRITES_PER_KEY", 300),
        "ip": env_int("RATE_LIMIT_WRITES_PER_IP", 600),
    },
    "checkout": {
        "key": env_int("RATE_LIMIT_CHECKOUT_PER_KEY", 120),
        "ip": env_int("RATE_LIMIT_CHECKOUT_PER_IP", 240),
    },
}
RATE_LIMIT_TRUSTED_PROXY_COUNT = env_int("RATE_LIMIT_TRUSTED_PROXY_COUNT", 0)

# Domain settings.
ORDER_RESERVATION_TTL = timedelta(seconds=env_int("ORDER_RESERVATION_TTL_SECONDS", 900))
# The order event log: the payload version events are written in, and how long they are
# kept (the audit trail stays).
ORDER_EVENTS_API_VERSION = "2026-11-29"
ORDER_EVENT_RETENTION = timedelta(days=env_int("ORDER_EVENT_RETENTION_DAYS", 30))
ORDER_EVENT_FEED_MAX_LIMIT = 500
# Long polls (`wait=`) and live streams of the log (events.api). A waiting request is
# woken by PostgreSQL NOTIFY and reads the log again at least every poll interval.
# At most the API's bound of 30 s; lower it behind a proxy that cuts idle requests sooner.
ORDER_EVENT_WAIT_MAX_SECONDS = env_int("ORDER_EVENT_WAIT_MAX_SECONDS", 30)
ORDER_EVENT_POLL_SECONDS = env_int("ORDER_EVENT_POLL_SECONDS", 5)
ORDER_EVENT_STREAM_HEARTBEAT_SECONDS = env_int("ORDER_EVENT_STREAM_HEARTBEAT_SECONDS", 15)
# Open streams per user, counted in Redis (EVENT_STREAM_REDIS_URL, the cache's Redis by
# default) across every process; without Redis each process counts its own.
ORDER_EVENT_STREAMS_PER_USER = env_int("ORDER_EVENT_STREAMS_PER_USER", 5)
EVENT_STREAM_REDIS_URL = env_str("EVENT_STREAM_REDIS_URL", CACHE_REDIS_URL)
ORDER_MAX_LINES = env_int("ORDER_MAX_LINES", 100)
ORDER_MAX_LINE_QUANTITY = env_int("ORDER_MAX_LINE_QUANTITY", 1000)
# A return opened within this many days of the order's delivery (or shipment) is authorized at
# once; 0: every return waits for staff.
RETURN_AUTO_AUTHORIZE_DAYS = env_int("RETURN_AUTO_AUTHORIZE_DAYS", 0)
IDEMPOTENCY_KEY_TTL = timedelta(hours=env_int("IDEMPOTENCY_KEY_TTL_HOURS", 24))
# An in-progress key whose request died (crashed process) may be taken over after this.
IDEMPOTENCY_LOCK_TIMEOUT = timedelta(seconds=env_int("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS", 60))

# Payments (Stripe). Development and tests point STRIPE_API_BASE at the fake server.
STRIPE_API_KEY = env_str("STRIPE_API_KEY", "sk_test_oms_local")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "http://127.0.0.1:8420")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "whsec_oms_local")
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)
STRIPE_CONNECT_TIMEOUT_SECONDS = float(env_str("STRIPE_CONNECT_TIMEOUT_SECONDS", "2"))
STRIPE_READ_TIMEOUT_SECONDS = float(env_str("STRIPE_READ_TIMEOUT_SECONDS", "10"))
# Real Stripe: card payments only, never a redirect (localstripe rejects the parameter).
STRIPE_FORBID_REDIRECTS = env_bool("STRIPE_FORBID_REDIRECTS", False)
# Circuit breakers (payment provider, each warehouse) are shared by all processes
# through Redis when BREAKER_REDIS_URL is set (process memory otherwise).
BREAKER_REDIS_URL = env_str("BREAKER_REDIS_URL", "")
PAYMENT_BREAKER_FAIL_MAX = env_int("PAYMENT_BREAKER_FAIL_MAX", 5)
PAYMENT_BREAKER_RESET_SECONDS = env_int("PAYMENT_BREAKER_RESET_SECONDS", 30)
# Operations with an unknown outcome younger than this are left to their request.
PAYMENT_RECONCILE_GRACE_SECONDS = env_int("PAYMENT_RECONCILE_GRACE_SECONDS", 60)
# How long the reconciler keeps an order edit's re-authorization that no commit finished
# (the commit died after the provider answered) before it voids it and fails the edit.
ORDER_EDIT_AUTHORIZATION_HOLD = timedelta(
    seconds=env_int("ORDER_EDIT_AUTHORIZATION_HOLD_SECONDS", 900)
)

# Celery: Redis by default, or RabbitMQ (amqp://...), where config/celery.py declares
# the task queues as quorum queues.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "") or "redis://127.0.0.1:6379/0"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    # Redis: unacknowledged tasks of a dead worker are redelivered after this.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 3600),
    # A publish without a retry policy (the outbox relay) fails at once when the
    # broker is down, instead of retrying to connect for the connection timeout:
    # the sweeper sends it later, and the request that committed it need not wait.
    "max_retries": 0,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
if CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # RabbitMQ: a publish returns once the broker has the message (publisher confirms;
    # on a quorum queue, once a majority of its replicas wrote it); one the broker did
    # not take raises, and the outbox leaves the message pending for the sweeper.
    CELERY_BROKER_TRANSPORT_OPTIONS["confirm_publish"] = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT_SECONDS", 60)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT_SECONDS", 90)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# On a lost broker connection, stop running tasks: they are redelivered (acks_late)
# and their handlers are idempotent.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {
        "task": "oms.core.outbox_sweep",
        "schedule": env_int("OUTBOX_SWEEP_INTERVAL_SECONDS", 10),
    },
    "orders-expire": {
        "task": "oms.orders.expire_overdue",
        "schedule": env_int("ORDER_EXPIRY_INTERVAL_SECONDS", 30),
    },
    "payments-reconcile": {
        "task": "oms.payments.reconcile",
        "schedule": env_int("PAYMENT_RECONCILE_INTERVAL_SECONDS", 60),
    },
    "idempotency-keys-purge": {
        "task": "oms.core.purge_idempotency_keys",
        "schedule": 3600,
    },
    "outbox-done-prune": {
        "task": "oms.core.prune_done_outbox",
        "schedule": env_int("PRUNE_INTERVAL_SECONDS", 600),
    },
    "event-deliveries-due": {
        "task": "oms.events.deliver_due",
        "schedule": env_int("EVENTS_DELIVERY_SWEEP_INTERVAL_SECONDS", 10),
    },
    "order-events-purge": {
        "task": "oms.events.purge_order_events",
        "schedule": 3600,
    },
    "worker-heartbeat": {
        "task": "oms.core.worker_heartbeat",
        "schedule": env_int("WORKER_HEARTBEAT_INTERVAL_SECONDS", 15),
    },
    "metric-samples-take": {
        "task": "oms.core.take_metric_samples",
        "schedule": env_int("METRIC_SAMPLE_INTERVAL_SECONDS", 60),
    },
}
# Queues: emails, routing, payments, events, default (beat jobs and the sweeper).
TASK_QUEUES = ("emails", "routing", "payments", "events", "default")

# Outbox: a dispatched message not done after this is dispatched again (lease).
OUTBOX_REDISPATCH_AFTER = timedelta(seconds=env_int("OUTBOX_REDISPATCH_AFTER_SECONDS", 300))
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 8)
OUTBOX_RETRY_BACKOFF_MAX_SECONDS = env_int("OUTBOX_RETRY_BACKOFF_MAX_SECONDS", 300)
# Done outbox messages are deleted this long after they were done (core.pruning): longer
# than any event key may be published again (a repeated key within it is written once).
OUTBOX_DONE_RETENTION = timedelta(hours=env_int("OUTBOX_DONE_RETENTION_HOURS", 48))
# Pruning deletes this many rows per transaction, at most this many batches per run.
PRUNE_BATCH_SIZE = env_int("PRUNE_BATCH_SIZE", 5000)
PRUNE_MAX_BATCHES = env_int("PRUNE_MAX_BATCHES", 1000)

# Fulfilment: requests to warehouses and their signed callbacks.
FULFILMENT_CALLBACK_BASE_URL = env_str("FULFILMENT_CALLBACK_BASE_URL", "http://127.0.0.1:8000")
# /health/ready: not ready past this many undispatched outbox messages; broker timeout.
HEALTH_OUTBOX_BACKLOG_MAX = env_int("HEALTH_OUTBOX_BACKLOG_MAX", 1000)
HEALTH_BROKER_TIMEOUT_SECONDS = float(env_str("HEALTH_BROKER_TIMEOUT_SECONDS", "1"))
# Where customers reach the API from their mail (one-click unsubscribe links).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
FULFILMENT_CONNECT_TIMEOUT_SECONDS = float(env_str("FULFILMENT_CONNECT_TIMEOUT_SECONDS", "2"))
FULFILMENT_READ_TIMEOUT_SECONDS = float(env_str("FULFILMENT_READ_TIMEOUT_SECONDS", "10"))
FULFILMENT_CALLBACK_TOLERANCE_SECONDS = env_int("FULFILMENT_CALLBACK_TOLERANCE_SECONDS", 300)
WAREHOUSE_BREAKER_FAIL_MAX = env_int("WAREHOUSE_BREAKER_FAIL_MAX", 5)
WAREHOUSE_BREAKER_RESET_SECONDS = env_int("WAREHOUSE_BREAKER_RESET_SECONDS", 30)

# Tax and shipping (pricing app): "flat" rates from the admin, or an "http" tax service.
TAX_PROVIDER = env_str("TAX_PROVIDER", "flat")
if TAX_PROVIDER not in ("flat", "http"):
    raise ImproperlyConfigured("TAX_PROVIDER must be flat or http.")
TAX_SERVICE_URL = env_str("TAX_SERVICE_URL", "")
if TAX_PROVIDER == "http" and not TAX_SERVICE_URL:
    raise ImproperlyConfigured("TAX_PROVIDER=http needs TAX_SERVICE_URL.")
TAX_SERVICE_TIMEOUT_SECONDS = float(env_str("TAX_SERVICE_TIMEOUT_SECONDS", "2"))
# When the tax service fails: "error" (503 tax_service_unavailable) or "flat" (flat rates).
TAX_SERVICE_FALLBACK = env_str("TAX_SERVICE_FALLBACK", "error")
if TAX_SERVICE_FALLBACK not in ("error", "flat"):
    raise ImproperlyConfigured("TAX_SERVICE_FALLBACK must be error or flat.")
TAX_BREAKER_FAIL_MAX = env_int("TAX_BREAKER_FAIL_MAX", 5)
TAX_BREAKER_RESET_SECONDS = env_int("TAX_BREAKER_RESET_SECONDS", 30)

# Order events: signed POSTs to subscribed internal services (events app).
EVENTS_CONNECT_TIMEOUT_SECONDS = float(env_str("EVENTS_CONNECT_TIMEOUT_SECONDS", "2"))
EVENTS_SUBSCRIPTION_CACHE_SECONDS = env_int("EVENTS_SUBSCRIPTION_CACHE_SECONDS", 10)
EVENTS_READ_TIMEOUT_SECONDS = float(env_str("EVENTS_READ_TIMEOUT_SECONDS", "5"))
# Seconds to wait after the 1st, 2nd, ... failed attempt of a delivery (each stretched by
# up to EVENTS_RETRY_JITTER); after the last one fails the delivery is given up.
# 1 min, 5 min, 30 min, 2 h, 6 h, 8 h, 12 h: 8 attempts over 28.6 hours at least.
EVENTS_RETRY_SCHEDULE_SECONDS = (60, 300, 1800, 7200, 21600, 28800, 43200)
EVENTS_RETRY_JITTER = 0.2
# A subscription whose every attempt failed for this long, and at least this many
# times, is disabled (staff enable it again).
EVENTS_DISABLE_AFTER = timedelta(hours=env_int("EVENTS_DISABLE_AFTER_HOURS", 24))
EVENTS_DISABLE_AFTER_ATTEMPTS = env_int("EVENTS_DISABLE_AFTER_ATTEMPTS", 8)
# A worker posting a delivery holds it this long at most (a dead worker's claim lapses).
EVENTS_DELIVERY_LEASE = timedelta(seconds=env_int("EVENTS_DELIVERY_LEASE_SECONDS", 120))

# Metrics (core.metrics): GET /metrics answers only with `Authorization: Bearer
# <METRICS_TOKEN>`, and not at all (404) while the token is empty. A worker serves its own
# on WORKER_METRICS_PORT (off when 0). Multiprocess mode: PROMETHEUS_MULTIPROC_DIR, read
# from the environment by prometheus_client itself.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# The admin's operations page charts samples taken each METRIC_SAMPLE_INTERVAL_SECONDS
# (beat) and kept METRIC_SAMPLE_RETENTION_HOURS. A worker sees only its own instruments:
# METRIC_SAMPLE_SCRAPE_URLS, comma-separated, names the web's /metrics (read with
# METRICS_TOKEN) to sample as well.
METRIC_SAMPLE_INTERVAL = timedelta(seconds=env_int("METRIC_SAMPLE_INTERVAL_SECONDS", 60))
METRIC_SAMPLE_RETENTION = timedelta(hours=env_int("METRIC_SAMPLE_RETENTION_HOURS", 24))
METRIC_SAMPLE_SCRAPE_URLS = env_list("METRIC_SAMPLE_SCRAPE_URLS", [])
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
WORKER_METRICS_ADDR = env_str("WORKER_METRICS_ADDR", "127.0.0.1")

# Outgoing email (SMTP); see config/settings/email.py.
from config.settings.email import *  # noqa: E402, F403
