"""Tests: always real PostgreSQL."""

import atexit
import os
import shutil
import tempfile

from .base import *  # noqa: F403
from .base import DATABASES, env_bool, env_int, env_str

# Connections close after each request, unless a test's server keeps them
# (tests/core/test_db_health_check.py).
for _database in DATABASES.values():
    _database["CONN_MAX_AGE"] = env_int("TEST_DATABASE_CONN_MAX_AGE", 0)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Never the shared Redis: tests that need a shared cache start their own redis-server.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Rate limits are off unless a test turns them on (tests/access/test_rate_limits.py).
RATE_LIMIT_ENABLED = env_bool("RATE_LIMIT_ENABLED", False)
# Stream counts likewise: in process memory unless a test gives its own redis-server.
EVENT_STREAM_REDIS_URL = env_str("EVENT_STREAM_REDIS_URL", "")

# Outbox work runs inline after commit unless a test starts a real worker and broker.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", True)
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "memory://")
if CELERY_BROKER_URL.startswith("memory"):
    # A real broker (a worker test) keeps base's options: CELERY_VISIBILITY_TIMEOUT_SECONDS.
    CELERY_BROKER_TRANSPORT_OPTIONS = {}

# Metrics in multiprocess mode, as served: a fresh directory per test run, shared with
# the workers and servers the tests start (they inherit the environment), removed at the
# end by the process that made it. Set here, before prometheus_client is first imported.
# Each pytest-xdist worker makes its own (it inherits the controller's environment), so
# one worker's counts never show in another's; what a worker starts inherits its own.
_metrics_owner = os.environ.get("PYTEST_XDIST_WORKER", "main")
if (
    not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    or os.environ.get("OMS_TEST_METRICS_OWNER", _metrics_owner) != _metrics_owner
):
    _metrics_dir = tempfile.mkdtemp(prefix="oms-test-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    os.environ["OMS_TEST_METRICS_OWNER"] = _metrics_owner
    atexit.register(shutil.rmtree, _metrics_dir, ignore_errors=True)
