"""The health check of a reused connection (core.db.backend): no round trip while the
connection is plainly alive; a connection the server dropped is still found and
replaced, with persistent connections (gunicorn), with the pool (uvicorn) and across a
restart of a PostgreSQL server of the test's own."""

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from django.core.wsgi import get_wsgi_application
from django.db import connection, connections
from django.db.utils import ConnectionHandler, load_backend

from config.settings.base import database_from_url
from tests.scale.clusters import Cluster
from tests.support import asgi_server
from tests.support.processes import LOOPBACK, free_port, stop_process, wait_answering

pytest_plugins = ("tests.support.asgi_server",)

ROOT = Path(__file__).resolve().parent.parent.parent


def _get(app: Any, path: str) -> int:
    """One request through Django's WSGI handler, as gunicorn's worker makes it."""
    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": LOOPBACK,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": LOOPBACK,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    response = app(environ, lambda status, headers: statuses.append(status))
    b"".join(response)
    response.close()  # request_finished: Django's end-of-request connection handling
    return int(statuses[0].split()[0])


def _record_sent_statements(raw: psycopg.Connection[Any]) -> list[str]:
    """Every statement the psycopg connection executes from now on, Django's or not."""
    sent: list[str] = []

    class RecordingCursor(raw.cursor_factory):  # type: ignore[name-defined]
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query))
            return super().execute(query, *args, **kwargs)

    raw.cursor_factory = RecordingCursor
    return sent


@pytest.mark.django_db(transaction=True)
def test_a_reused_connection_sends_no_select_1_on_the_next_request(
    monkeypatch: pytest.MonkeyPatch,
):
    # Given a persistent connection with health checks on, opened by a first request
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    app = get_wsgi_application()
    assert _get(app, "/health/ready") == 200
    raw = connection.connection
    assert raw is not None, "the first request's connection was not kept"
    sent = _record_sent_statements(raw)
    through_django: list[str] = []

    def record(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        through_django.append(sql)
        return execute(sql, *args)

    # When the next request reuses it
    with connection.execute_wrapper(record):
        assert _get(app, "/health/ready") == 200

    # Then the same connection sent only the request's own statements: no health check
    assert connection.connection is raw
    assert through_django, "the request made no query"
    assert sent == through_django
    connection.close()


@pytest.fixture
def gunicorn(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """One sync gunicorn worker on the test database, connections kept 600 s."""
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--workers", "1",
         "--bind", f"{LOOPBACK}:{port}", "--log-level", "warning"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": asgi_server.test_database_url(),
            "DATABASE_POOL": "0",
            "TEST_DATABASE_CONN_MAX_AGE": "600",
            # Its own: gunicorn's on_starting empties the directory it is given, which
            # would drop this test process's metric files (and the counts of later tests).
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
    )  # fmt: skip
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_answering(server, f"{base}/health/live", name="gunicorn")
        yield base
    finally:
        stop_process(server)
        log.close()


def _server_backends() -> list[int]:
    """The pids of every other connection to the test database (the server's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return sorted(pid for (pid,) in cursor.fetchall())


def _terminate(pids: list[int]) -> None:
    with connection.cursor() as cursor:
        for pid in pids:
            # Waits (up to 5 s) until the backend has exited.
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            assert cursor.fetchone() == (True,)


def test_a_connection_the_server_terminated_is_replaced_before_the_next_request(gunicorn: str):
    # Given a gunicorn worker whose persistent connection served a request
    assert requests.get(f"{gunicorn}/health/ready", timeout=10).status_code == 200
    kept = _server_backends()
    assert len(kept) == 1, kept
    assert requests.get(f"{gunicorn}/health/ready", timeout=10).status_code == 200
    assert _server_backends() == kept, "the connection was not kept between requests"

    # When PostgreSQL terminates that connection's backend
    _terminate(kept)

    # Then the next request still answers, on a new connection
    response = requests.get(f"{gunicorn}/health/ready", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["database"] == "ok"
    replaced = _server_backends()
    assert len(replaced) == 1
    assert replaced != kept


def test_a_pooled_connection_the_server_terminated_is_replaced_at_checkout(
    start_asgi_server: Callable[..., Any],
):
    # Given the pool (as under ASGI) lending connections that served requests
    server = start_asgi_server(env={"DATABASE_POOL": "1"})
    for _ in range(3):
        status, _body = server.request("GET", "/health/ready", key="")
        assert status == 200
    pooled = _server_backends()
    assert pooled

    # When PostgreSQL terminates every one of them
    _terminate(pooled)

    # Then the next requests still answer, on new connections
    for _ in range(3):
        status, body = server.request("GET", "/health/ready", key="")
        assert status == 200, body
    assert not set(_server_backends()) & set(pooled)


@pytest.fixture
def own_server() -> Iterator[Cluster]:
    cluster = Cluster().start(with_replica=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_persistent_connection_survives_a_restart_of_the_server(
    own_server: Cluster, django_db_blocker: Any
):
    # Given a persistent connection (as config.settings.base makes every alias's) that
    # served a request
    settings_dict = database_from_url(own_server.primary.url("postgres"))
    assert settings_dict["ENGINE"] == "core.db.backend"
    assert settings_dict["CONN_MAX_AGE"] > 0
    settings_dict = ConnectionHandler({"default": settings_dict}).settings["default"]
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "own")
    # Not the test database: a server of this test's own.
    with django_db_blocker.unblock():
        _survive_a_restart(own_server, wrapper)


def _survive_a_restart(own_server: Cluster, wrapper: Any) -> None:
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (before,) = cursor.fetchone()

        # When the server restarts between two requests
        own_server.primary.stop()
        own_server.primary.start()
        wrapper.close_if_unusable_or_obsolete()  # request_started (close_old_connections)

        # Then the next request's first query runs, on a new connection
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (after,) = cursor.fetchone()
        assert after != before
    finally:
        wrapper.close()


def test_the_socket_check_is_on_for_every_alias_unless_switched_off(
    monkeypatch: pytest.MonkeyPatch,
):
    url = "postgres://postgres@127.0.0.1:5432/oms"
    assert database_from_url(url)["ENGINE"] == "core.db.backend"
    assert connections.settings["default"]["ENGINE"] == "core.db.backend"
    monkeypatch.setenv("DATABASE_CONN_HEALTH_CHECK_SOCKET", "0")
    assert database_from_url(url)["ENGINE"] == "django.db.backends.postgresql"
    monkeypatch.setenv("DATABASE_CONN_HEALTH_CHECK_SOCKET", "1")
    monkeypatch.setenv("DATABASE_CONN_HEALTH_CHECKS", "0")
    # No health check at all: Django's backend, unchanged.
    assert database_from_url(url)["ENGINE"] == "django.db.backends.postgresql"
