"""Load generator: runs in its own (spawned) process, standard library only."""

import json
import random
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from benchmarks.payload import checkout_body, payment_authorized, random_lines

# A checkout answered 201 whose payment is not authorized (with --payment): an error
# (the label does not start with 2, so it counts as one everywhere).
UNPAID_CREATED = "unpaid 201"


@dataclass(frozen=True)
class LoadSpec:
    port: int
    kind: str  # "checkout", "products", "order", "customer_orders" or "mixed"
    duration: float
    max_requests: int | None
    clients: int
    seed: int
    tokens: list[str]
    skus: list[str]
    max_lines: int
    orders: list[tuple[str, str]]  # (token, order id), for "order"
    # The customer with a long order history, for "customer_orders".
    history_token: str = ""
    # Send If-None-Match with the ETag last received for the same path.
    conditional: bool = False
    # With --payment: every checkout pays with this, and only a 201 with the payment
    # authorized counts as one (any other 201 is counted as UNPAID_CREATED).
    payment_method: str = ""


@dataclass
class LoadResult:
    kind: str
    elapsed: float
    latencies: list[float]
    statuses: Counter[str]
    created: list[tuple[str, str]]
    client_cpu: float
    retries: int
    error_samples: list[str]
    # TCP connections opened: about one per client with keep-alive, one per request without.
    connects: int = 0


class ProtocolError(OSError):
    """An answer this client cannot read (counted as an error, then a new connection)."""


class _Client:
    """One keep-alive HTTP/1.1 connection over a plain socket. http.client parses every
    answer's header block with the email package (about a third of this process's CPU
    per request): here the status line and headers are split by hand, which is all a
    loopback benchmark of one known server needs (Content-Length or chunked bodies, no
    100-continue). gunicorn's sync workers close the connection after every response
    (they do not do keep-alive), so those requests pay a loopback connect; `connects`
    counts them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.host_line = f"Host: 127.0.0.1:{port}\r\n"
        self.sock: socket.socket | None = None
        self.reader: Any = None
        self.connects = 0

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.connects += 1

    def close(self) -> None:
        if self.sock is not None:
            self.reader.close()
            self.sock.close()
        self.sock = self.reader = None

    def send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes, int, str | None]:
        head = f"{method} {path} HTTP/1.1\r\n{self.host_line}" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode("latin-1") + (body or b"")
        for attempt in (1, 2):
            reused = self.sock is not None
            if self.sock is None:
                self._connect()
            try:
                status, data, etag, keep = self._exchange(request)
            except ValueError as error:  # a status line or length that is not a number
                self.close()
                raise ProtocolError(str(error)) from error
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, EOFError):
                # A kept-alive connection the server closed while idle: retrying is safe
                # (a checkout carries the same Idempotency-Key).
                self.close()
                if not reused or attempt == 2:
                    raise ConnectionResetError("the server closed the connection") from None
                continue
            except OSError:
                self.close()
                raise
            if not keep:
                self.close()
            return status, data, attempt - 1, etag
        raise AssertionError("unreachable")

    def _exchange(self, request: bytes) -> tuple[int, bytes, str | None, bool]:
        assert self.sock is not None  # noqa: S101 - connected by send()
        self.sock.sendall(request)
        reader = self.reader
        line = reader.readline(65537)
        if not line:
            raise EOFError
        version, status_text = line[:8], line[9:12]
        status = int(status_text)
        length: int | None = None
        chunked = False
        keep = version == b"HTTP/1.1"
        etag: str | None = None
        while True:
            line = reader.readline(65537)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise EOFError
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep = b"close" not in value.lower() and (keep or b"keep-alive" in value.lower())
            elif name == b"etag":
                etag = value.strip().decode("latin-1")
        if status in (204, 304) or 100 <= status < 200:
            data = b""
        elif chunked:
            parts = []
            while True:
                size = int(reader.readline(65537).split(b";")[0], 16)
                if size == 0:
                    while reader.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(reader.read(size))
                reader.readline(65537)
            data = b"".join(parts)
        elif length is not None:
            data = reader.read(length)
            if len(data) < length:
                raise EOFError
        else:
            data, keep = reader.read(), False  # delimited by the end of the connection
        return status, data, etag, keep


def run_load(spec: LoadSpec) -> LoadResult:
    """Closed loop: each client thread sends its next request when the last one answered."""
    cpu_start = time.process_time()
    stop = threading.Event()
    issued = 0
    issued_lock = threading.Lock()
    latencies: list[list[float]] = [[] for _ in range(spec.clients)]
    statuses: list[Counter[str]] = [Counter() for _ in range(spec.clients)]
    created: list[list[tuple[str, str]]] = [[] for _ in range(spec.clients)]
    retries = [0] * spec.clients
    connects = [0] * spec.clients
    error_samples: list[str] = []
    start_barrier = threading.Barrier(spec.clients + 1)

    def may_issue() -> bool:
        nonlocal issued
        if spec.max_requests is None:
            return True
        with issued_lock:
            if issued >= spec.max_requests:
                return False
            issued += 1
            return True

    def client_loop(index: int) -> None:
        rng = random.Random(spec.seed * 1_000 + index)  # noqa: S311 - load shape, not secrets
        client = _Client(spec.port)
        sequence = 0
        own_orders = spec.orders[index :: spec.clients] or spec.orders
        etags: dict[str, str] = {}
        start_barrier.wait()
        while not stop.is_set() and may_issue():
            token = rng.choice(spec.tokens)
            headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
            body = None
            kind = spec.kind
            if kind == "mixed":
                kind = _mixed_kind(rng.random(), bool(spec.orders), bool(spec.history_token))
            if kind == "checkout":
                method, path = "POST", "/api/v1/orders/"
                headers["Content-Type"] = "application/json"
                headers["Idempotency-Key"] = uuid.uuid4().hex
                number = rng.randrange(len(spec.tokens))
                body = json.dumps(
                    checkout_body(
                        random_lines(rng, spec.skus, spec.max_lines),
                        f"bench-{number:04d}@example.com",
                        spec.payment_method,
                    )
                ).encode()
            elif kind == "products":
                method, path = "GET", "/api/v1/products/"
            elif kind == "customer_orders":
                headers["Authorization"] = f"Token {spec.history_token}"
                method, path = "GET", "/api/v1/orders/"
            else:
                # Each client walks its own share of the orders round robin, so with
                # --conditional it revalidates each after one lap (a 304 once unchanged).
                token, order_id = own_orders[sequence % len(own_orders)]
                sequence += 1
                headers["Authorization"] = f"Token {token}"
                method, path = "GET", f"/api/v1/orders/{order_id}/"
            if spec.conditional and method == "GET" and path in etags:
                headers["If-None-Match"] = etags[path]
            started = time.perf_counter()
            try:
                status, data, retried, etag = client.send(method, path, body, headers)
                label = str(status)
                retries[index] += retried
                if etag and spec.conditional and method == "GET":
                    etags[path] = etag
            except OSError as error:  # the client has closed the connection: a new one next
                label, data = type(error).__name__, str(error).encode()
            latencies[index].append(time.perf_counter() - started)
            if label == "201" and kind == "checkout":
                order = json.loads(data)
                created[index].append((token, order["id"]))
                if spec.payment_method and not payment_authorized(order):
                    label = UNPAID_CREATED
            statuses[index][label] += 1
            if label[0] not in "23" and len(error_samples) < 5:
                error_samples.append(f"{label}: {data[:300].decode(errors='replace')}")
        client.close()
        connects[index] = client.connects

    threads = [
        threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(spec.clients)
    ]
    for thread in threads:
        thread.start()
    start_barrier.wait()
    started = time.perf_counter()
    deadline = started + spec.duration
    while any(thread.is_alive() for thread in threads) and time.perf_counter() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return LoadResult(
        kind=spec.kind,
        elapsed=elapsed,
        latencies=[value for per_client in latencies for value in per_client],
        statuses=sum(statuses, Counter()),
        created=[pair for per_client in created for pair in per_client],
        client_cpu=time.process_time() - cpu_start,
        retries=sum(retries),
        error_samples=error_samples,
        connects=sum(connects),
    )


def _mixed_kind(draw: float, have_orders: bool, have_history: bool) -> str:
    """The soak's mix: 10 % checkouts, 30 % product lists, 30 % order details, 30 % the
    history customer's first page (a kind without its data falls back to the list)."""
    if draw < 0.1:
        return "checkout"
    if draw < 0.4:
        return "products"
    if draw < 0.7:
        return "order" if have_orders else "products"
    return "customer_orders" if have_history else "products"
