"""Run the fake warehouse (``fakes.warehouse``) and receive its callbacks in tests.

Pull the fixtures into a test module with::

    pytest_plugins = ("tests.support.fake_warehouse",)

    def test_something(fake_warehouse, callback_receiver):
        gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)
        fake_warehouse.configure(mode="error500", count=1)
        callback_receiver.wait_for(2)

* ``fake_warehouse`` (function scope): a ``FakeWarehouse`` in a thread on a free
  127.0.0.1 port, signing secret ``WAREHOUSE_SECRET``, short delays (callbacks 50 ms
  apart, backoff from 50 ms, hangs 5 s at most), stopped at the end of the test.
* ``callback_receiver`` (function scope): a ``CallbackReceiver``, a small HTTP server
  that records every callback and answers with scripted statuses (200 unless told
  otherwise: ``fail_next(1)``).
* ``running_fake_warehouse()``: ``python -m fakes.warehouse --port 0`` as a subprocess,
  waited for (ready line), stopped with SIGTERM (then SIGKILL); ``.control`` is a
  ``ControlClient`` with the same methods as ``FakeWarehouse``.

Test modules import from here and load it as a plugin, after the import; the marker
PYTEST_DONT_REWRITE keeps pytest from warning that it cannot rewrite its asserts (it has
none: failures here raise AssertionError explicitly).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest

from fakes.warehouse import READY_PREFIX, REQUEST_PATH, ControlClient, FakeWarehouse
from tests.support.processes import read_ready_line, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTEN_HOST = "127.0.0.1"
WAREHOUSE_SECRET = "whsec_test_fake_warehouse"
FAST = {
    "ship_after": 0.05,
    "deliver_after": 0.05,
    "callback_backoff": 0.05,
    "callback_timeout": 2.0,
    "hang_seconds": 5.0,
}


def wait_until(predicate: Callable[[], bool], *, timeout: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


@pytest.fixture
def fake_warehouse() -> Iterator[FakeWarehouse]:
    """A fake warehouse in a thread for this test; ``WAREHOUSE_SECRET`` signs both ways."""
    fake = FakeWarehouse(secret=WAREHOUSE_SECRET, **FAST).start()
    try:
        yield fake
    finally:
        fake.stop()


# -- callbacks -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedCallback:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    received_at: float

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def event(self) -> dict[str, Any]:
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise AssertionError(f"a callback body is a JSON object, got {self.body!r}")
        return value


@dataclass
class _Script:
    statuses: list[int] = field(default_factory=list)
    default: int = 200


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: CallbackReceiver) -> None:
        self.receiver = receiver
        super().__init__((LISTEN_HOST, 0), _ReceiverHandler)


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ReceiverServer
    timeout = 10.0

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = self.server.receiver._record(self.path, dict(self.headers.items()), body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True


class CallbackReceiver:
    """Record POSTs on 127.0.0.1; answer each with the next scripted status, else 200."""

    def __init__(self, *, statuses: Iterable[int] = ()) -> None:
        self._lock = threading.Condition()
        self._script = _Script(statuses=list(statuses))
        self._received: list[ReceivedCallback] = []
        self._server = _ReceiverServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """The callback URL to put in a fulfilment request."""
        return f"http://{LISTEN_HOST}:{self._server.server_address[1]}/warehouse-callbacks"

    @property
    def received(self) -> list[ReceivedCallback]:
        with self._lock:
            return list(self._received)

    def fail_next(self, times: int = 1, status: int = 500) -> None:
        with self._lock:
            self._script.statuses.extend([status] * times)

    def wait_for(self, count: int, *, timeout: float = 5.0) -> list[ReceivedCallback]:
        """Wait until ``count`` callbacks arrived; return them all, oldest first."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._received) >= count, timeout):
                raise AssertionError(
                    f"{len(self._received)} callbacks after {timeout}s, expected {count}"
                )
            return list(self._received)

    def start(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    def __enter__(self) -> CallbackReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            status = self._script.statuses.pop(0) if self._script.statuses else 200
            self._received.append(
                ReceivedCallback(
                    path=path,
                    headers=headers,
                    body=body,
                    answered=status,
                    received_at=time.monotonic(),
                )
            )
            self._lock.notify_all()
            return status


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as receiver:
        yield receiver


# -- as a subprocess -------------------------------------------------------------------


@dataclass
class FakeWarehouseProcess:
    """A fake warehouse running as ``python -m fakes.warehouse``."""

    url: str
    secret: str
    process: subprocess.Popen[bytes]
    control: ControlClient

    @property
    def requests_url(self) -> str:
        return f"{self.url}{REQUEST_PATH}"


@contextmanager
def running_fake_warehouse(
    *,
    secret: str = WAREHOUSE_SECRET,
    args: Sequence[str] = (),
    log_path: Path | None = None,
    startup_timeout: float = 20.0,
) -> Iterator[FakeWarehouseProcess]:
    """Start ``python -m fakes.warehouse --port 0 --secret ... *args``; stop it on exit."""
    log: IO[bytes] | int = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.warehouse", "--port", "0", "--host", LISTEN_HOST]
        + ["--secret", secret, *args]
        + (["--verbose"] if log_path else []),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        if process.stdout is None:
            raise RuntimeError("no stdout pipe")
        line = read_ready_line(process.stdout, time.monotonic() + startup_timeout)
        if not line.startswith(READY_PREFIX):
            raise RuntimeError(
                f"fake warehouse did not start (got {line!r}, exit {process.poll()}); "
                f"see {log_path or 'its stderr'}"
            )
        url = line.removeprefix(READY_PREFIX)
        yield FakeWarehouseProcess(
            url=url, secret=secret, process=process, control=ControlClient(url)
        )
    finally:
        stop_process(process)
        if not isinstance(log, int):
            log.close()
