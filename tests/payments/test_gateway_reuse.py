"""One StripeGateway per process and configuration (payments.provider.payment_gateway):
provider calls reuse their thread's keep-alive connection, a pooled connection the
provider closed meanwhile is replaced without failing the call, and a test (or a
deployment) that points STRIPE_API_BASE elsewhere gets a gateway for that address."""

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from core.breakers import circuit_breakers_reset
from payments.gateways.stripe import StripeGateway
from payments.provider import payment_gateway, provider_call
from tests.payments.conftest import GOOD_CARD
from tests.support.fake_stripe import FakeStripeServer, new_order_id
from tests.support.http_relay import relay

pytest_plugins = ("tests.support.fake_stripe",)


class KeepAliveProxy(ThreadingHTTPServer):
    """An HTTP/1.1 proxy in front of the fake Stripe server that keeps client
    connections open between requests (as Stripe does) and counts the TCP connections
    it accepted and the requests it forwarded. `idle_timeout`: close a client
    connection idle that long, as a server's keep-alive timeout does."""

    daemon_threads = True

    def __init__(self, upstream: str, *, idle_timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.idle_timeout = idle_timeout
        self.connections = 0
        self.authorizations: list[str] = []
        self.counts_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _KeepAliveHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def get_request(self) -> tuple[socket.socket, Any]:
        accepted = super().get_request()
        with self.counts_lock:
            self.connections += 1
        return accepted


class _KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KeepAliveProxy

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/v1/payment_intents":
            with self.server.counts_lock:
                self.server.authorizations.append(self.headers.get("Idempotency-Key", ""))
        host, port = self.server.upstream
        relay(
            self,
            host=host,
            port=port,
            path=self.path,
            body=body,
            close=False,
            not_relayed=("host", "connection", "content-length"),
        )


@pytest.fixture
def keep_alive_proxy(fake_stripe: FakeStripeServer, settings: Any) -> Iterator[KeepAliveProxy]:
    circuit_breakers_reset()
    proxy = KeepAliveProxy(fake_stripe.url, idle_timeout=0.3)
    proxy.thread.start()
    settings.STRIPE_API_BASE = proxy.url
    settings.STRIPE_API_KEY = fake_stripe.api_key
    settings.STRIPE_CONNECT_TIMEOUT_SECONDS = 1.0
    settings.STRIPE_READ_TIMEOUT_SECONDS = 5.0
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        circuit_breakers_reset()


def authorize(key: str) -> str:
    """Authorize through the provider door every payment path uses; return the status."""
    result = provider_call(
        lambda gateway: gateway.authorize(
            amount=1500,
            currency="eur",
            payment_method=GOOD_CARD,
            idempotency_key=key,
            metadata={"order_id": new_order_id()},
        )
    )
    return result.status


def test_two_authorizations_in_one_process_reuse_one_connection(keep_alive_proxy):
    # Given the provider behind a proxy that keeps connections open
    keys = [f"oms-test-{uuid.uuid4().hex}" for _ in range(2)]

    # When two authorizations are sent one after the other, well within the idle timeout
    statuses = [authorize(key) for key in keys]

    # Then both authorized, over one TCP connection
    assert statuses == ["requires_capture", "requires_capture"]
    assert keep_alive_proxy.authorizations == keys
    assert keep_alive_proxy.connections == 1


def test_a_pooled_connection_the_provider_closed_does_not_fail_the_next_authorization(
    keep_alive_proxy,
):
    # Given an authorization whose connection the provider then closed (idle timeout)
    first, second = (f"oms-test-{uuid.uuid4().hex}" for _ in range(2))
    assert authorize(first) == "requires_capture"
    time.sleep(keep_alive_proxy.idle_timeout + 0.5)

    # When the next authorization is sent
    status = authorize(second)

    # Then it authorized on a new connection, sent once (nothing sent twice)
    assert status == "requires_capture"
    assert keep_alive_proxy.authorizations == [first, second]
    assert keep_alive_proxy.connections == 2


def test_a_gateway_is_made_per_configuration_and_kept_per_process(
    fake_stripe: FakeStripeServer, settings: Any
):
    # Given the provider's address
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.STRIPE_API_KEY = fake_stripe.api_key
    gateway = payment_gateway()

    # When the settings stay, the same gateway serves; when the address changes (a test's
    # own proxy), another one does, and the first is still there when it changes back
    assert isinstance(gateway, StripeGateway)
    assert payment_gateway() is gateway
    settings.STRIPE_API_BASE = fake_stripe.url + "/"
    assert payment_gateway() is not gateway
    settings.STRIPE_API_BASE = fake_stripe.url
    assert payment_gateway() is gateway
    settings.STRIPE_READ_TIMEOUT_SECONDS = 7.5
    assert payment_gateway() is not gateway


def test_threads_share_the_gateway_each_with_its_own_connection(keep_alive_proxy):
    # Given two threads authorizing at the same time
    keys = [f"oms-test-{uuid.uuid4().hex}" for _ in range(4)]
    gateways: list[StripeGateway] = []
    statuses: list[str] = []
    lock = threading.Lock()

    def run(pair: list[str]) -> None:
        for key in pair:
            status = authorize(key)
            with lock:
                gateways.append(payment_gateway())
                statuses.append(status)

    threads = [threading.Thread(target=run, args=(keys[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then all authorized through one gateway, one connection per thread at most
    assert statuses == ["requires_capture"] * 4
    assert len({id(gateway) for gateway in gateways}) == 1
    assert sorted(keep_alive_proxy.authorizations) == sorted(keys)
    assert keep_alive_proxy.connections <= 2
