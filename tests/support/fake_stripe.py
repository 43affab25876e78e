"""Run the fake Stripe server (``python -m fakes.stripe_server``) for a test session.

``running_fake_stripe()`` starts it as a subprocess on a free loopback port (``--port
0``; the ready line names the port), waits until it answers an authenticated request and
stops it with SIGTERM (then SIGKILL) on exit. The ``fake_stripe`` fixture does that once
per session. Pull the fixtures into a test module with::

    pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

The server is shared by the whole session and never flushed: tests tell their objects
apart by unique metadata (``new_order_id()``), not by counting everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import stripe

from fakes.stripe_server import READY_PREFIX, register_webhook_endpoint
from tests.support.processes import read_ready_line, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_API_KEY = "sk_test_oms_fake"


@dataclass
class FakeStripeServer:
    """A running fake Stripe server and direct (unproxied) ways to look inside it."""

    url: str
    api_key: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    def client(self) -> stripe.StripeClient:
        """A stripe client that talks straight to the fake server, for test set-up."""
        return stripe.StripeClient(
            self.api_key,
            base_addresses={"api": self.url},
            http_client=stripe.RequestsClient(timeout=(2.0, 10.0)),
            max_network_retries=0,
        )

    def create_card(self, number: str) -> str:
        """Make a card PaymentMethod from a raw test card number; return its id."""
        method = self.client().v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        return method.id

    def payment_intents(self, *, order_id: str | None = None) -> list[dict[str, Any]]:
        """Every PaymentIntent the server holds (for ``order_id`` if given), as dicts."""
        client = self.client()
        found: list[dict[str, Any]] = []
        starting_after: str | None = None
        for _ in range(1000):
            params: dict[str, Any] = {"limit": 100}
            if starting_after:
                params["starting_after"] = starting_after
            page = client.v1.payment_intents.list(params=params)
            found.extend(intent.to_dict() for intent in page.data)
            if not page.has_more or not page.data:
                break
            starting_after = page.data[-1].id
        if order_id is None:
            return found
        return [i for i in found if (i.get("metadata") or {}).get("order_id") == order_id]

    def register_webhook(
        self, *, url: str, secret: str, events: Sequence[str] | None = None, endpoint_id: str
    ) -> None:
        register_webhook_endpoint(
            self.url, url=url, secret=secret, events=events, endpoint_id=endpoint_id
        )


def new_order_id() -> str:
    """An order id no other test uses, to find this test's intents on the shared server."""
    return f"test-{uuid.uuid4().hex[:12]}"


def _answers(url: str, api_key: str) -> bool:
    request = urllib.request.Request(  # noqa: S310 - loopback http URL built here
        f"{url}/v1/payment_intents?limit=1", headers={"Authorization": f"Bearer {api_key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1.0) as response:  # noqa: S310
            json.load(response)
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


@contextmanager
def running_fake_stripe(
    *, log_path: Path | None = None, startup_timeout: float = 20.0
) -> Iterator[FakeStripeServer]:
    """Start ``python -m fakes.stripe_server --port 0``, wait until it answers, stop it."""
    log: IO[bytes] | int = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.stripe_server", "--port", "0", "--host", "127.0.0.1"]
        + (["--verbose"] if log_path else []),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + startup_timeout
        line = read_ready_line(process.stdout, deadline)
        if not line.startswith(READY_PREFIX):
            raise RuntimeError(
                f"fake Stripe server did not start (got {line!r}, exit {process.poll()}); "
                f"see {log_path or 'its stderr'}"
            )
        server = FakeStripeServer(
            url=line.removeprefix(READY_PREFIX), api_key=FAKE_API_KEY, process=process
        )
        server.log_path = log_path
        while not _answers(server.url, server.api_key):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"fake Stripe server at {server.url} does not answer")
            time.sleep(0.05)
        yield server
    finally:
        stop_process(process)
        if not isinstance(log, int):
            log.close()


@pytest.fixture(scope="session")
def fake_stripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeStripeServer]:
    """The session's fake Stripe server; its log is in the session's tmp dir."""
    log_path = tmp_path_factory.mktemp("fake_stripe") / "server.log"
    with running_fake_stripe(log_path=log_path) as server:
        yield server
