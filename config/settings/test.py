"""Tests: always real PostgreSQL."""

from .base import *  # noqa: F403
from .base import database_from_url, env_bool, env_str

DATABASES = {
    "default": database_from_url(env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oms"))
}
DATABASES["default"]["CONN_MAX_AGE"] = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Outbox work runs inline after commit unless a test starts a real worker and broker.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", True)
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "memory://")
if CELERY_BROKER_URL.startswith("memory"):
    # A real broker (a worker test) keeps base's options: CELERY_VISIBILITY_TIMEOUT_SECONDS.
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
