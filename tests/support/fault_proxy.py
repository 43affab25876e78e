"""A fault-injecting HTTP/1.1 proxy with Stripe's idempotency semantics, for tests.

Put it between the code under test and a fake provider, then break the network on
purpose::

    with FaultProxy(upstream=fake_stripe.url) as proxy:
        gateway = StripeGateway(api_key=..., api_base=proxy.url, read_timeout=0.5)
        proxy.set_fault("drop_response", times=1, path=r"^/v1/payment_intents$")
        ...
        [r.idempotency_key for r in proxy.requests]

It listens on 127.0.0.1 only, one thread per connection, answers every request with
``Connection: close`` (so a client never reuses a socket the proxy dropped) and gives
every socket a timeout.

Faults (``set_fault``; one at a time, optionally limited to the next ``times`` matching
requests, to paths matching the regex ``path`` (searched in path + query) and to one
``method``):

* ``latency``: the provider takes ``seconds`` longer. The wait starts once the
  idempotency key is claimed, so a retry with the same key meanwhile gets 409, and the
  request still reaches the provider even when the client gave up waiting.
* ``error``: answer ``status`` (500) with a Stripe-style JSON error without forwarding.
* ``refuse``: stop listening, so connecting fails, until ``clear()``. Port-wide: takes no
  ``times``, ``path`` or ``method``.
* ``drop``: read the request, close the connection without answering; not forwarded.
* ``drop_response``: forward, let the provider act, then close the connection without
  answering: the client cannot tell whether it was charged.

Idempotency (the fake provider ignores ``Idempotency-Key``; Stripe does not): a POST
whose ``Idempotency-Key`` was seen before with the same method, path and body gets the
stored response, with ``Idempotent-Replayed: true``, and is not forwarded. The same key
with other parameters gets 400 ``idempotency_error``; the same key while the first
request is still in flight gets 409 ``idempotency_error``. Responses are stored only if
the provider produced them and started executing: 400, 401, 403, 409 and 429 are not
stored (validation or conflict), neither are the proxy's own fault answers. Keys are
scoped by the ``Authorization`` header, as Stripe scopes them by account. ``error`` and
``drop`` act in front of the provider, before the idempotency check; ``latency`` and
``drop_response`` act after it, so a replayed answer can be delayed or dropped too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.support.fake_stripe import FakeStripeServer

LISTEN_HOST = "127.0.0.1"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
_NOT_STORED = frozenset({400, 401, 403, 409, 429})


class FaultKind(StrEnum):
    LATENCY = "latency"
    ERROR = "error"
    REFUSE = "refuse"
    DROP = "drop"
    DROP_RESPONSE = "drop_response"


@dataclass
class _Fault:
    kind: FaultKind
    times: int | None
    path: re.Pattern[str] | None
    method: str | None
    seconds: float
    status: int

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass(frozen=True)
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the proxy saw it, and what it did with it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    idempotency_key: str | None
    forwarded: bool
    replayed: bool
    fault: str | None
    status: int | None  # what the client got; None when the connection was dropped
    upstream_status: int | None  # what the provider answered, if it was asked

    @property
    def form(self) -> dict[str, str]:
        """The form-encoded body as a flat dict (``metadata[order_id]`` stays one key)."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class _Exchange:
    fault: _Fault | None
    response: _Response | None = None
    forwarded: bool = False
    replayed: bool = False
    upstream_status: int | None = None


@dataclass
class _Stored:
    fingerprint: tuple[str, str, bytes]
    response: _Response


@dataclass
class _State:
    fault: _Fault | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    stored: dict[tuple[str, str], _Stored] = field(default_factory=dict)
    keys_in_flight: set[tuple[str, str]] = field(default_factory=set)
    in_flight: int = 0


def _stripe_error(status: int, error_type: str, message: str) -> _Response:
    body = json.dumps({"error": {"type": error_type, "message": message}}).encode()
    headers = [("Content-Type", "application/json"), ("Request-Id", "req_fault_proxy")]
    return _Response(status=status, headers=headers, body=body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__((LISTEN_HOST, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = LISTEN_HOST
        self.server_port = self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.proxy.client_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def _proxy(self) -> None:
        self.close_connection = True
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = list(self.headers.items())
        exchange = self.server.proxy._exchange(self.command, self.path, headers, body)
        if exchange.response is not None:
            response = exchange.response
            self.send_response_only(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.body)
            self.wfile.flush()


class FaultProxy:
    """A threaded proxy in front of ``upstream`` that can be told to misbehave."""

    def __init__(
        self,
        upstream: str,
        *,
        upstream_timeout: float = 10.0,
        client_timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream
        self.upstream_timeout = upstream_timeout
        self.client_timeout = client_timeout
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port
        self._state = _State()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://{LISTEN_HOST}:{self._port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request handled so far, oldest first (a copy)."""
        with self._lock:
            return list(self._state.requests)

    def start(self) -> FaultProxy:
        self._stopping.clear()
        self._listen()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, cut latency waits short and wait for requests in flight."""
        self._stopping.set()
        self._unlisten()
        with contextlib.suppress(TimeoutError):
            self.wait_idle(timeout)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_fault(
        self,
        kind: FaultKind | str,
        *,
        times: int | None = None,
        path: str | None = None,
        method: str | None = None,
        seconds: float = 0.0,
        status: int = 500,
    ) -> None:
        """Misbehave from now on (for the next ``times`` matching requests if given)."""
        kind = FaultKind(kind)
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        if kind is FaultKind.REFUSE and (times is not None or path or method):
            raise ValueError("refuse acts on the whole port: no times, path or method")
        if kind is FaultKind.LATENCY and not 0 < seconds <= 60:
            raise ValueError("latency needs 0 < seconds <= 60")
        self.clear()
        fault = _Fault(
            kind=kind,
            times=times,
            path=re.compile(path) if path else None,
            method=method.upper() if method else None,
            seconds=seconds,
            status=status,
        )
        with self._lock:
            self._state.fault = fault
        if kind is FaultKind.REFUSE:
            self._unlisten()

    def clear(self) -> None:
        """Remove the fault; listen again if connections were being refused."""
        with self._lock:
            self._state.fault = None
        if self._server is None and not self._stopping.is_set():
            self._listen()

    def reset(self) -> None:
        """Clear the fault and forget recorded requests and stored responses."""
        self.clear()
        with self._lock:
            self._state.requests.clear()
            self._state.stored.clear()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being handled (e.g. one delayed past its client)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._state.in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self._state.in_flight} request(s) still in flight")
                self._idle.wait(remaining)

    def _listen(self) -> None:
        if self._server is not None:
            return
        server = _Server(self._port, self)
        self._port = server.server_port
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fault-proxy-{self._port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread

    def _unlisten(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            fault = self._state.fault
            if fault is None or fault.kind is FaultKind.REFUSE or not fault.matches(method, path):
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times == 0:
                    self._state.fault = None
            return replace(fault)

    def _exchange(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> _Exchange:
        with self._lock:
            self._state.in_flight += 1
        try:
            exchange = self._handle(method, path, headers, body)
            header_map = {name: value for name, value in headers}
            lowered = {name.lower(): value for name, value in headers}
            record = RecordedRequest(
                method=method,
                path=path,
                headers=header_map,
                body=body,
                idempotency_key=lowered.get("idempotency-key"),
                forwarded=exchange.forwarded,
                replayed=exchange.replayed,
                fault=exchange.fault.kind.value if exchange.fault else None,
                status=exchange.response.status if exchange.response else None,
                upstream_status=exchange.upstream_status,
            )
            with self._lock:
                self._state.requests.append(record)
            return exchange
        finally:
            with self._idle:
                self._state.in_flight -= 1
                self._idle.notify_all()

    def _handle(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> _Exchange:
        fault = self._take_fault(method, path)
        exchange = _Exchange(fault=fault)
        kind = fault.kind if fault else None
        if fault is not None and kind is FaultKind.ERROR:
            exchange.response = _stripe_error(fault.status, "api_error", "Injected by FaultProxy")
            return exchange
        if kind is FaultKind.DROP:
            return exchange

        lowered = {name.lower(): value for name, value in headers}
        key = lowered.get("idempotency-key") if method == "POST" else None
        scope = (lowered.get("authorization", ""), key) if key else None
        fingerprint = (method, path, body)
        if scope is not None:
            with self._lock:
                stored = self._state.stored.get(scope)
                claimed = False
                if stored is not None and stored.fingerprint == fingerprint:
                    replayed = stored.response
                    exchange.response = replace(
                        replayed, headers=[*replayed.headers, ("Idempotent-Replayed", "true")]
                    )
                    exchange.replayed = True
                elif stored is not None:
                    exchange.response = _stripe_error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        f"parameters they were first used with (key {key!r}).",
                    )
                elif scope in self._state.keys_in_flight:
                    exchange.response = _stripe_error(
                        409,
                        "idempotency_error",
                        "There is currently another in-progress request using this "
                        f"idempotency key ({key!r}). Try again later.",
                    )
                else:
                    self._state.keys_in_flight.add(scope)
                    claimed = True
            if not claimed:
                if fault is not None and kind is FaultKind.LATENCY:
                    self._stopping.wait(fault.seconds)
                if kind is FaultKind.DROP_RESPONSE:
                    exchange.response = None
                return exchange

        try:
            if fault is not None and kind is FaultKind.LATENCY:
                self._stopping.wait(fault.seconds)
            response, from_upstream = self._forward(method, path, headers, body)
            exchange.forwarded = from_upstream
            exchange.upstream_status = response.status if from_upstream else None
            if scope is not None and from_upstream and response.status not in _NOT_STORED:
                with self._lock:
                    self._state.stored[scope] = _Stored(fingerprint, response)
        finally:
            if scope is not None:
                with self._lock:
                    self._state.keys_in_flight.discard(scope)
        exchange.response = None if kind is FaultKind.DROP_RESPONSE else response
        return exchange

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[_Response, bool]:
        """Ask the upstream; answer 502 (not from upstream) if it cannot be reached."""
        connection = http.client.HTTPConnection(
            self._upstream_host, self._upstream_port, timeout=self.upstream_timeout
        )
        outgoing = {name: value for name, value in headers if name.lower() not in _HOP_BY_HOP}
        outgoing["Host"] = f"{self._upstream_host}:{self._upstream_port}"
        outgoing["Connection"] = "close"
        if body or method == "POST":
            outgoing["Content-Length"] = str(len(body))
        try:
            connection.request(method, path, body=body or None, headers=outgoing)
            upstream = connection.getresponse()
            data = upstream.read()
        except (OSError, http.client.HTTPException) as exc:
            return _stripe_error(502, "api_error", f"FaultProxy upstream error: {exc}"), False
        finally:
            connection.close()
        kept = [(k, v) for k, v in upstream.getheaders() if k.lower() not in _HOP_BY_HOP]
        return _Response(status=upstream.status, headers=kept, body=data), True


def connect_refused(url: str, timeout: float = 1.0) -> bool:
    """Tell whether connecting to ``url``'s host and port is refused right now."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def fault_proxy(fake_stripe: FakeStripeServer) -> Iterator[FaultProxy]:
    """A fresh FaultProxy in front of the session's fake Stripe server, stopped after."""
    with FaultProxy(upstream=fake_stripe.url) as proxy:
        yield proxy
