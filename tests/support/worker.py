"""A real Celery worker process on a private Redis broker, against the test database.

Pull the fixtures into a test module with::

    pytest_plugins = ("tests.support.redis_server", "tests.support.worker")

    @pytest.mark.django_db(transaction=True)
    def test_something(celery_broker, start_worker):
        worker = start_worker(env={"FULFILMENT_READ_TIMEOUT_SECONDS": "1"})
        ...                                   # commit work: the worker handles it
        wait_for(lambda: ..., worker=worker)  # bounded polling; fails fast if it died
        worker.kill()                         # kill -9, the whole process group

* ``celery_broker``: the test's own redis-server (``redis_server``), with this process's
  Celery app pointed at it and eager mode off for the test (restored afterwards), so
  ``transaction.on_commit`` dispatches land in Redis.
* ``start_worker(env=..., beat=False)``: ``celery -A config worker -Q <all queues>
  --concurrency 1`` as a subprocess in its own session, with ``config.settings.test``
  on the database pytest created (committed rows only: use ``transaction=True``),
  eager off, the broker above and short leases and backoffs (``WORKER_ENV``). ``beat``
  embeds the scheduler (``-B``) so the outbox sweep runs every second. Each worker's log
  is a file in the test's tmp dir, added to the report of a failing test. Every worker
  still running is killed at the end of the test.
PYTEST_DONT_REWRITE: no asserts here; failures raise AssertionError explicitly.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from kombu import pools as kombu_pools

from tests.support.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_MARK = "ready."
LOG_TAIL_CHARS = 20000
_LOGS_KEY = pytest.StashKey[list[Path]]()

# Short enough that a test sees redelivery, retries and sweeps within seconds.
WORKER_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.test",
    "CELERY_TASK_ALWAYS_EAGER": "false",
    "CELERY_VISIBILITY_TIMEOUT_SECONDS": "5",
    "CELERY_TASK_SOFT_TIME_LIMIT_SECONDS": "30",
    "CELERY_TASK_TIME_LIMIT_SECONDS": "40",
    "OUTBOX_SWEEP_INTERVAL_SECONDS": "1",
    "OUTBOX_REDISPATCH_AFTER_SECONDS": "5",
    "OUTBOX_MAX_ATTEMPTS": "8",
    "OUTBOX_RETRY_BACKOFF_MAX_SECONDS": "1",
    # Beat jobs a test does not trigger itself stay out of the way.
    "ORDER_EXPIRY_INTERVAL_SECONDS": "3600",
    "PAYMENT_RECONCILE_INTERVAL_SECONDS": "3600",
    "FULFILMENT_CONNECT_TIMEOUT_SECONDS": "1",
    "FULFILMENT_READ_TIMEOUT_SECONDS": "3",
    "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    "EMAIL_TIMEOUT_SECONDS": "5",
    "EMAIL_SEND_LOCK_TIMEOUT_SECONDS": "10",
    "PYTHONUNBUFFERED": "1",
}


def worker_database_url() -> str:
    """The URL of the database pytest created for this run (``test_<name>``)."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{quote(db['NAME'], safe='')}"


@dataclass
class WorkerProcess:
    """One ``celery worker`` subprocess (its own process group) and its log file."""

    name: str
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        """Wait for celery's "ready." line; fail with the log if it exits first."""
        deadline = time.monotonic() + timeout
        while READY_MARK not in self.log():
            if not self.alive:
                raise AssertionError(
                    f"worker {self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} not ready after {timeout}s")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """kill -9 the worker and its pool process: no shutdown, nothing acked."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout: float = 20.0,
    what: str = "",
    worker: WorkerProcess | None = None,
    interval: float = 0.05,
) -> Any:
    """Poll until ``predicate()`` is truthy and return it; fail after ``timeout`` seconds,
    or at once when ``worker`` died."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if worker is not None and not worker.alive:
            raise AssertionError(f"worker {worker.name} died while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def web_transport_options(broker_url: str) -> dict[str, Any]:
    """The broker transport options config.settings.base gives a web process on this
    broker (config.settings.test drops them for its in-memory default)."""
    env = {
        "CELERY_BROKER_URL": broker_url,
        "CELERY_VISIBILITY_TIMEOUT_SECONDS": WORKER_ENV["CELERY_VISIBILITY_TIMEOUT_SECONDS"],
    }
    with mock.patch.dict(os.environ, env):
        values = runpy.run_path(str(REPO_ROOT / "config" / "settings" / "base.py"))
    return dict(values["CELERY_BROKER_TRANSPORT_OPTIONS"])


def _app_reconnect(app: Any) -> None:
    """Forget pooled broker connections so the next publish uses the current broker_url.

    The app's pools live in kombu's registry, keyed by broker URL: closing one there
    without clearing the registry would hand the closed pool back to the next test on
    that URL (the in-memory broker), whose eager publishes would fail.
    """
    kombu_pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@contextlib.contextmanager
def app_on_broker(broker_url: str, settings: Any) -> Iterator[None]:
    """Point this process's Celery app at `broker_url`, eager off, with the workers'
    outbox lease (a message dispatched here is swept by their rules); restore after."""
    from config.celery import app

    settings.OUTBOX_REDISPATCH_AFTER = timedelta(
        seconds=int(WORKER_ENV["OUTBOX_REDISPATCH_AFTER_SECONDS"])
    )
    keys = ("broker_url", "broker_transport_options", "task_always_eager")
    saved = {key: app.conf[key] for key in keys}
    app.conf.update(
        broker_url=broker_url,
        broker_transport_options=web_transport_options(broker_url),
        task_always_eager=False,
    )
    _app_reconnect(app)
    try:
        yield
    finally:
        app.conf.update(saved)
        _app_reconnect(app)


def app_process_env(broker: RedisServer) -> dict[str, str]:
    """The settings of another process of the app on ``broker`` (a worker, or the API
    under uvicorn that publishes to it): ``WORKER_ENV``, the test database, and the
    payment provider and fulfilment callback URL this process's settings name now (call
    it once the test has pointed them at its fakes)."""
    return {
        **WORKER_ENV,
        "DATABASE_URL": worker_database_url(),
        "CELERY_BROKER_URL": broker.url,
        "STRIPE_API_BASE": settings.STRIPE_API_BASE,
        "STRIPE_API_KEY": settings.STRIPE_API_KEY,
        "STRIPE_WEBHOOK_SECRET": settings.STRIPE_WEBHOOK_SECRET,
        "FULFILMENT_CALLBACK_BASE_URL": settings.FULFILMENT_CALLBACK_BASE_URL,
    }


@pytest.fixture
def celery_broker(redis_server: RedisServer, settings: Any) -> Iterator[RedisServer]:
    """This test's Redis as the broker of this process's Celery app."""
    with app_on_broker(redis_server.url, settings):
        yield redis_server


@pytest.fixture
def start_worker(
    transactional_db: None,
    celery_broker: RedisServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start Celery worker subprocesses for this test: ``start_worker(env=..., beat=...)``."""
    workers: list[WorkerProcess] = []
    logs = request.node.stash.setdefault(_LOGS_KEY, [])

    def start(
        *, env: dict[str, str] | None = None, beat: bool = False, ready: bool = True
    ) -> WorkerProcess:
        # Read at start: the test may have pointed settings at its fakes by now.
        base_env = {**os.environ, **app_process_env(celery_broker), **(env or {})}
        name = f"worker{len(workers) + 1}"
        log_path = tmp_path / f"{name}.log"
        command = [sys.executable, "-m", "celery", "-A", "config", "worker"]
        command += ["-Q", ",".join(settings.TASK_QUEUES), "--concurrency", "1"]
        command += ["--loglevel", "INFO", "-n", f"{name}-{os.getpid()}@%h", "--without-mingle"]
        command += ["--without-gossip"]
        if beat:
            command += ["-B", "-s", str(tmp_path / f"{name}-beat-schedule")]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=base_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(name=name, log_path=log_path, process=process, env=base_env)
        workers.append(worker)
        logs.append(log_path)
        return worker.wait_ready() if ready else worker

    try:
        yield start
    finally:
        for worker in workers:
            # The test is over: nothing to finish or acknowledge (a cold shutdown
            # only takes longer).
            worker.kill()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Show the workers' logs (tails) under a failing test's report."""
    report = yield
    if report.when == "call" and report.failed:
        for path in item.stash.get(_LOGS_KEY, []):
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            report.sections.append((f"celery {path.name}", text[-LOG_TAIL_CHARS:]))
    return report
