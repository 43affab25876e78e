"""The API under uvicorn in a child process, on a free loopback port, against the test
database; and a small server-sent events client over http.client.

A module may also load this as a plugin for a server per test, stopped at its end::

    pytest_plugins = ("tests.support.asgi_server",)

    @pytest.mark.django_db(transaction=True)
    def test_something(start_asgi_server):
        server = start_asgi_server(env={"ORDER_EVENT_STREAM_HEARTBEAT_SECONDS": "1"})
        status, body = server.post("/api/v1/orders/", payload, key=key)

PYTEST_DONT_REWRITE: no asserts here; failures raise AssertionError explicitly.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import pytest
from django.conf import settings

from tests.support.processes import LOOPBACK, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent.parent


def test_database_url() -> str:
    """DATABASE_URL of the test database (call once pytest-django has set it up)."""
    database = settings.DATABASES["default"]
    credentials = quote(database.get("USER") or "")
    if database.get("PASSWORD"):
        credentials += ":" + quote(database["PASSWORD"])
    host = database.get("HOST") or "127.0.0.1"
    port = database.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{database['NAME']}"


class AsgiServer:
    """`python -m uvicorn config.asgi:application` with the given settings (env)."""

    def __init__(self, *, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = workdir / "uvicorn.log"
        self._env = env
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> AsgiServer:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": test_database_url(),
            "DATABASE_POOL": "1",
            **self._env,
        }
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application"]
            + ["--host", LOOPBACK, "--port", str(self.port), "--no-access-log"]
            + ["--lifespan", "off"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"uvicorn did not start; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)

    def get(self, path: str, *, key: str, timeout: float = 10.0) -> tuple[int, Any]:
        """GET a JSON answer: (status, parsed body)."""
        return self.request("GET", path, key=key, timeout=timeout)

    def post(
        self,
        path: str,
        body: Any,
        *,
        key: str,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        """POST ``body`` as JSON: (status, parsed answer)."""
        return self.request(
            "POST",
            path,
            key=key,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
            timeout=timeout,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        connection = self.connection(timeout)
        try:
            connection.request(
                method,
                path,
                body=body,
                headers={"Authorization": f"Bearer {key}", **(headers or {})},
            )
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()


@dataclass
class ServerSentEvent:
    id: str
    event: str
    data: str


@dataclass
class EventStream:
    """An open text/event-stream answer, read one event at a time."""

    connection: http.client.HTTPConnection
    response: http.client.HTTPResponse
    comments: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.response.status

    def next_event(self, deadline: float | None = None) -> ServerSentEvent:
        """The next event (comments and `retry:` are recorded and skipped); fail once
        ``deadline`` (time.monotonic()) has passed, though heartbeats keep coming."""
        fields: dict[str, str] = {}
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise AssertionError(f"no event before the deadline; got {fields or 'nothing'}")
            line = self.response.readline()
            if not line:
                raise AssertionError("the stream ended")
            text = line.decode().rstrip("\n")
            if text == "":
                if "data" in fields:
                    return ServerSentEvent(
                        fields.get("id", ""), fields.get("event", ""), fields["data"]
                    )
                continue
            if text.startswith(":"):
                self.comments.append(text[1:].strip())
                continue
            name, _, value = text.partition(":")
            fields[name] = value.removeprefix(" ")

    def next_comment(self) -> str:
        """The next comment line (an event before it is an error)."""
        while True:
            line = self.response.readline()
            if not line:
                raise AssertionError("the stream ended")
            text = line.decode().rstrip("\n")
            if text.startswith(":"):
                return text[1:].strip()
            if text and not text.startswith("retry:"):
                raise AssertionError(f"an event before the comment: {text!r}")

    def events_until(self, event_type: str, *, timeout: float) -> list[ServerSentEvent]:
        """Read events up to and including the first of ``event_type``."""
        deadline = time.monotonic() + timeout
        events = [self.next_event(deadline)]
        while events[-1].event != event_type:
            events.append(self.next_event(deadline))
        return events

    def close(self) -> None:
        self.connection.close()


def open_stream(
    server: AsgiServer,
    path: str,
    *,
    key: str,
    last_event_id: str | None = None,
    timeout: float = 10.0,
) -> EventStream:
    connection = server.connection(timeout)
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    connection.request("GET", path, headers=headers)
    return EventStream(connection, connection.getresponse())


@pytest.fixture
def start_asgi_server(
    transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., AsgiServer]]:
    """Start the API under uvicorn for this test: ``start_asgi_server(env=...)``; each
    one is stopped at the end of the test (its log is ``uvicorn-<n>/uvicorn.log`` in the
    test's tmp dir)."""
    servers: list[AsgiServer] = []

    def start(*, env: dict[str, str] | None = None) -> AsgiServer:
        workdir = tmp_path / f"uvicorn-{len(servers) + 1}"
        workdir.mkdir()
        server = AsgiServer(workdir=workdir, env=env or {})
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
