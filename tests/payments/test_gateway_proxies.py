"""The gateway honours the environment's proxy settings (HTTPS_PROXY, HTTP_PROXY,
NO_PROXY), resolved once when it is built: provider calls do not read the environment."""

import base64
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from payments.gateways.base import ProviderUnavailable
from payments.gateways.stripe import StripeGateway
from tests.payments.conftest import GOOD_CARD
from tests.support.fake_stripe import FakeStripeServer, new_order_id
from tests.support.http_relay import relay

pytest_plugins = ("tests.support.fake_stripe",)

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


class ForwardingProxy(ThreadingHTTPServer):
    """A plain HTTP forward proxy: takes absolute-form requests, forwards them to the
    origin they name, and records the URL of each."""

    daemon_threads = True

    def __init__(self, credentials: str = "") -> None:
        self.forwarded: list[str] = []
        self.forwarded_lock = threading.Lock()
        # user:password the proxy asks for (407 without them), as Basic credentials
        self.required_authorization = (
            "Basic " + base64.b64encode(credentials.encode()).decode() if credentials else ""
        )
        super().__init__(("127.0.0.1", 0), _ForwardingHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ForwardingHandler(BaseHTTPRequestHandler):
    server: ForwardingProxy

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _forward(self) -> None:
        target = urlsplit(self.path)
        if not target.hostname:
            self.send_error(400, "a proxy needs an absolute URL")
            return
        required = self.server.required_authorization
        if required and self.headers.get("Proxy-Authorization") != required:
            self.send_response_only(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="egress"')
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        with self.server.forwarded_lock:
            self.server.forwarded.append(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        path = target.path + (f"?{target.query}" if target.query else "")
        relay(
            self,
            host=target.hostname,
            port=target.port or 80,
            path=path,
            body=self.rfile.read(length) if length else None,
            close=True,
        )

    do_GET = _forward
    do_POST = _forward


def _serving(proxy: ForwardingProxy) -> Iterator[ForwardingProxy]:
    proxy.thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.fixture
def forwarding_proxy() -> Iterator[ForwardingProxy]:
    yield from _serving(ForwardingProxy())


@pytest.fixture
def authenticating_proxy() -> Iterator[ForwardingProxy]:
    yield from _serving(ForwardingProxy(credentials="egress user:p@ss:word"))


@pytest.fixture
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def refusing_address() -> str:
    """A local address nothing listens on: a connection there is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def gateway_for(fake_stripe: FakeStripeServer) -> StripeGateway:
    return StripeGateway(
        api_key=fake_stripe.api_key,
        api_base=fake_stripe.url,
        connect_timeout=1.0,
        read_timeout=5.0,
    )


def authorize(gateway: StripeGateway) -> str:
    result = gateway.authorize(
        amount=1500,
        currency="eur",
        payment_method=GOOD_CARD,
        idempotency_key=f"oms-test-{uuid.uuid4().hex}",
        metadata={"order_id": new_order_id()},
    )
    return result.status


def authorize_in_new_thread(gateway: StripeGateway) -> str:
    """Authorize from a thread of its own (on a pooled connection of its own)."""
    statuses: list[str] = []
    worker = threading.Thread(target=lambda: statuses.append(authorize(gateway)))
    worker.start()
    worker.join(timeout=30)
    return statuses[0]


def test_a_proxy_in_the_environment_carries_the_provider_calls_of_every_thread(
    fake_stripe, forwarding_proxy, clean_proxy_environment
):
    # Given HTTP_PROXY and HTTPS_PROXY naming a forward proxy when the gateway is built
    clean_proxy_environment.setenv("HTTP_PROXY", forwarding_proxy.url)
    clean_proxy_environment.setenv("HTTPS_PROXY", forwarding_proxy.url)
    gateway = gateway_for(fake_stripe)

    # When it authorizes from this thread and from another one
    statuses = [authorize(gateway), authorize_in_new_thread(gateway)]

    # Then both authorizations went through the proxy
    assert statuses == ["requires_capture", "requires_capture"]
    assert forwarding_proxy.forwarded == [f"{fake_stripe.url}/v1/payment_intents"] * 2


def test_a_proxy_that_refuses_fails_the_call_as_the_provider_unreachable(
    fake_stripe, clean_proxy_environment
):
    # Given HTTP_PROXY naming an address that refuses connections
    clean_proxy_environment.setenv("HTTP_PROXY", refusing_address())
    gateway = gateway_for(fake_stripe)

    # When it authorizes, then the attempt went to the proxy and could not connect
    with pytest.raises(ProviderUnavailable):
        authorize(gateway)


def test_no_proxy_sends_the_provider_calls_straight_to_the_api(
    fake_stripe, clean_proxy_environment
):
    # Given a refusing proxy, but NO_PROXY naming the API's host
    clean_proxy_environment.setenv("HTTP_PROXY", refusing_address())
    clean_proxy_environment.setenv("NO_PROXY", "localhost,127.0.0.1")
    gateway = gateway_for(fake_stripe)

    # When it authorizes, from this thread and another, then the calls bypass the proxy
    assert authorize(gateway) == "requires_capture"
    assert authorize_in_new_thread(gateway) == "requires_capture"


def test_the_environment_is_read_when_the_gateway_is_built_not_per_call(
    fake_stripe, clean_proxy_environment
):
    # Given a gateway built with no proxy in the environment
    gateway = gateway_for(fake_stripe)
    assert authorize(gateway) == "requires_capture"

    # When a (refusing) proxy appears in the environment afterwards
    clean_proxy_environment.setenv("HTTP_PROXY", refusing_address())

    # Then the gateway's calls, in this thread and a new one, still go straight out
    assert authorize(gateway) == "requires_capture"
    assert authorize_in_new_thread(gateway) == "requires_capture"
    # and a gateway built now uses the proxy
    with pytest.raises(ProviderUnavailable):
        authorize(gateway_for(fake_stripe))


def test_a_proxy_that_asks_for_credentials_gets_the_ones_in_its_address(
    fake_stripe, authenticating_proxy, clean_proxy_environment
):
    # Given HTTP_PROXY naming a proxy that answers 407 without its credentials, with them
    # in the address (percent-encoded, as a URL carries them)
    host = authenticating_proxy.url.removeprefix("http://")
    clean_proxy_environment.setenv("HTTP_PROXY", f"http://egress%20user:p%40ss%3Aword@{host}")
    gateway = gateway_for(fake_stripe)

    # When it authorizes, then the proxy took the credentials and carried the call
    assert authorize(gateway) == "requires_capture"
    assert authenticating_proxy.forwarded == [f"{fake_stripe.url}/v1/payment_intents"]


def test_a_proxy_address_without_a_scheme_is_taken_as_http(
    fake_stripe, forwarding_proxy, clean_proxy_environment
):
    # Given HTTP_PROXY as host:port only, as requests (and curl) accept it
    clean_proxy_environment.setenv("HTTP_PROXY", forwarding_proxy.url.removeprefix("http://"))
    gateway = gateway_for(fake_stripe)

    # When it authorizes, then the call went through that proxy
    assert authorize(gateway) == "requires_capture"
    assert forwarding_proxy.forwarded == [f"{fake_stripe.url}/v1/payment_intents"]
