"""A private ``redis-server`` on a free loopback port, for tests that break the broker.

Pull the fixture into a test module with::

    pytest_plugins = ("tests.support.redis_server",)

    def test_something(redis_server):
        redis_server.url            # redis://127.0.0.1:<port>/0
        redis_server.stop()         # an outage: connections are refused
        redis_server.start()        # back on the same port, empty (no persistence)

The server never persists anything (``--save "" --appendonly no``), so a restart loses
every message it held, like a broker that crashed. It is stopped at the end of the test.
Never point this at a shared Redis: each test gets its own process.
PYTEST_DONT_REWRITE: no asserts here; failures raise AssertionError explicitly.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import redis

from tests.support.processes import free_port

LISTEN_HOST = "127.0.0.1"


class RedisServer:
    """One redis-server process; ``start``/``stop`` it as often as a test needs."""

    def __init__(self, *, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or 0
        self.log_path = workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LISTEN_HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=LISTEN_HOST, port=self.port, socket_connect_timeout=1, socket_timeout=2
        )

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start listening (on the same port as before, if it ran already)."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/test installs it)")
        fixed_port = self.port
        for _attempt in range(1 if fixed_port else 5):
            # Another process can take a probed port before redis binds it.
            port = fixed_port or free_port()
            self._log = open(self.log_path, "ab")  # noqa: SIM115
            self._process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", LISTEN_HOST, "--save", ""]
                + ["--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            self.port = port
            if self._wait_ready(timeout):
                return self
            self._terminate()
        raise RuntimeError(f"redis-server did not start on port {self.port}; see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop it (an outage); the port stays this server's for a later ``start``."""
        self._terminate(timeout)
        deadline = time.monotonic() + timeout
        while _accepts(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                with self.client() as client:
                    if client.ping():
                        return True
            except redis.RedisError:
                time.sleep(0.02)
        return False

    def _terminate(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LISTEN_HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh redis-server for this test, stopped at its end."""
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()
