"""The fake payment provider of a --payment run: started before Django, stopped after.

A paid checkout confirms its order, and a confirmed order's outbox messages (warehouse
routing, the status email) are handed to the Celery broker right after the commit, in
the request, as in production. So a --payment run also starts a private redis-server as
the broker (nothing consumes it; it is discarded at the end) rather than publish into a
shared one; its CPU is reported too.

`--payment-fake responder` (the default) runs benchmarks.stripe_responder, which answers
at once; `--payment-fake localstripe` runs the project's fake (fakes/stripe_server.py),
which costs several ms of CPU per authorization (see benchmarks/RESULTS.md). Either runs
as its own process on loopback, so its CPU is read from /proc like the server's.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from benchmarks.payload import PAYMENT_METHOD
from benchmarks.procfs import proc_cpu_seconds
from benchmarks.server import free_port
from benchmarks.source import REPO_ROOT

_READY = {
    "responder": ("benchmarks.stripe_responder", "stripe-responder ready "),
    "localstripe": ("fakes.stripe_server", "fake-stripe ready "),
}


@dataclass
class PaymentFake:
    kind: str
    url: str
    process: subprocess.Popen[bytes]
    broker_url: str = ""
    broker: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.process.pid)

    def broker_cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.broker.pid) if self.broker else 0.0

    def environment(self) -> dict[str, str]:
        """What the server and this process need to authorize through this fake."""
        return {
            "STRIPE_API_BASE": self.url,
            "STRIPE_API_KEY": "sk_test_oms_bench",
            # Production settings send automatic_payment_methods, which localstripe refuses.
            "STRIPE_FORBID_REDIRECTS": "1" if self.kind == "responder" else "0",
            **({"CELERY_BROKER_URL": self.broker_url} if self.broker_url else {}),
        }


@contextmanager
def payment_fake(
    kind: str, log_path: Path, ports: range | None = None, timeout: float = 20.0
) -> Iterator[PaymentFake]:
    """Start the fake on a free loopback port, wait for its ready line, stop it on exit."""
    module, ready = _READY[kind]
    port = free_port(ports)
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None  # noqa: S101 - set by stdout=PIPE
            deadline = time.monotonic() + timeout
            line = b""
            while not line and time.monotonic() < deadline and process.poll() is None:
                line = process.stdout.readline()
            text = line.decode(errors="replace").strip()
            if not text.startswith(ready):
                raise RuntimeError(
                    f"the {kind} payment fake did not start ({text!r}, exit {process.poll()}); "
                    f"see {log_path}"
                )
            # Whatever the fake prints later is read and dropped, so that it never blocks
            # on a full pipe.
            threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
            fake = PaymentFake(kind=kind, url=text.removeprefix(ready), process=process)
            with private_broker(log_path.parent, ports) as (fake.broker, fake.broker_url):
                yield fake
        finally:
            _stop(process)


@contextmanager
def private_broker(
    scratch: Path, ports: range | None, timeout: float = 10.0
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of this run's own on a free loopback port, without persistence."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("redis-server not found (Debian: apt-get install redis-server)")
    port = free_port(ports)
    process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=scratch,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the private redis-server on port {port} did not start")
            time.sleep(0.05)
        yield process, f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


def _drain(stream: IO[bytes]) -> None:
    while stream.read(65536):
        pass


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group this script started
            process.wait(timeout=5)


def parse_ports(text: str) -> range | None:
    """'18400-18499' -> range(18400, 18500); '' -> None (any free port)."""
    if not text:
        return None
    low, _, high = text.partition("-")
    return range(int(low), int(high or low) + 1)


def describe(args: argparse.Namespace) -> str:
    if not args.payment:
        return "no payment (orders wait in pending_payment)"
    return f"payment_method {PAYMENT_METHOD}, authorized by {args.payment_fake}"
