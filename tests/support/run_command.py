"""Start ``scripts/run`` as a new user would, on free ports with its own database.

``RunCommand(tmp_path, database=...)`` picks free loopback ports for the API, the fake
Stripe server, the fake warehouse and a Redis of its own (nothing answers there, so
scripts/run starts ``redis-server`` itself), keeps var/ in ``tmp_path`` (OMS_VAR_DIR), and
uses PostgreSQL at ``DATABASE_URL``'s server with the given database name (created by
scripts/run, dropped by ``drop_database()``). ``start()`` waits for ``/health/ready``;
``stop()`` sends SIGTERM to the script alone, as a supervisor would, and waits for it.
``descendants()`` lists every process below the script (from /proc).
PYTEST_DONT_REWRITE: no asserts here; failures raise AssertionError explicitly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tests.support.processes import LOOPBACK, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def port_is_free(port: int) -> bool:
    """Whether nothing listens on the loopback port: a server could bind it now (as
    servers do, with SO_REUSEADDR: closed connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    pending.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def database_url(name: str) -> str:
    base = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oms"))
    return urlunsplit(base._replace(path=f"/{name}"))


def drop_database(name: str) -> None:
    admin = urlunsplit(urlsplit(database_url(name))._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def postgres_answers(name: str = "postgres") -> bool:
    try:
        psycopg.connect(database_url(name), connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


class RunCommand:
    """One ``scripts/run`` process at a time, on the same ports and var/ each start."""

    def __init__(self, workdir: Path, *, database: str, broker_url: str = "") -> None:
        self.workdir = workdir
        self.database = database
        self.port = free_port()
        self.stripe_port = free_port()
        self.warehouse_port = free_port()
        self.redis_port = free_port()
        # Empty: a Redis on a free port, which scripts/run starts (and stops) itself.
        self.broker_url = broker_url or f"redis://{LOOPBACK}:{self.redis_port}/0"
        self.var_dir = workdir / "var"
        self.output_path = workdir / "run.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment scripts/run gets (and a shell pasting the walkthrough)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "CELERY_", "STRIPE_", "PYTEST", "FAKE_"))
            and key not in {"BREAKER_REDIS_URL", "CACHE_REDIS_URL", "METRICS_TOKEN"}
        }
        env.update(
            DATABASE_URL=database_url(self.database),
            CELERY_BROKER_URL=self.broker_url,
            HOST=LOOPBACK,
            PORT=str(self.port),
            FAKE_STRIPE_PORT=str(self.stripe_port),
            FAKE_WAREHOUSE_PORT=str(self.warehouse_port),
            OMS_VAR_DIR=str(self.var_dir),
        )
        return env

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def ports(self) -> list[int]:
        return [self.port, self.stripe_port, self.warehouse_port, self.redis_port]

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def start(self, timeout: float = 180.0) -> RunCommand:
        self._output = self.output_path.open("ab")
        self.process = subprocess.Popen(
            ["bash", "scripts/run"],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"scripts/run exited {self.process.returncode}:\n" + self.output()[-4000:]
                )
            if self.ready():
                return self
            time.sleep(0.5)
        raise AssertionError("scripts/run never became ready:\n" + self.output()[-4000:])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health/ready", timeout=2) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def descendants(self) -> set[int]:
        if self.process is None:
            return set()
        return descendants(self.process.pid)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM to scripts/run only; its trap must stop the rest."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self._output is not None:
                self._output.close()
        return code

    def kill_leftovers(self, pids: set[int]) -> None:
        """After a failed test: SIGKILL what this run started and left behind: the given
        processes, and any in this checkout whose command line names this run's var/ or
        one of its ports (an orphan whose parent died is no longer below scripts/run)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        marks = [str(self.var_dir)] + [f"--port {port}" for port in self.ports]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                # scripts/run works in this checkout: another checkout's process never is
                # one of ours.
                in_this_checkout = (entry / "cwd").resolve() == REPO_ROOT
            except OSError:
                continue
            if in_this_checkout and any(mark in command_line for mark in marks):
                pids.add(int(entry.name))
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def demo_keys(self) -> dict[str, str]:
        """The keys seed_demo printed: {"alice": ..., "staff": ..., "storefront": ...}."""
        keys: dict[str, str] = {}
        for line in self.output().splitlines():
            match = re.match(r"\s+(customer|staff|storefront)\b.*: (oms_\w+)$", line)
            if match:
                role = {"customer": "alice"}.get(match[1], match[1])
                keys[role] = match[2]
        return keys

    def api(
        self,
        method: str,
        path: str,
        key: str,
        body: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(  # noqa: S310 - loopback URL built here
            f"{self.base_url}/api/v1/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)
