"""A fake warehouse fulfilment service on loopback (dev, demo and tests only).

    python -m fakes.warehouse --port 8430 --secret S [--host 127.0.0.1]
        [--ship-after 2] [--deliver-after 4] [--reject-skus A,B] [--no-auto-callbacks]
        [--hang-seconds 30] [--callback-attempts 5] [--callback-backoff 0.5] [--verbose]

A threaded stdlib HTTP server. It binds a loopback address only (``--port 0`` picks a
free port), keeps all state in memory, prints one ready line on stdout once it accepts
connections::

    fake-warehouse ready http://127.0.0.1:8430

and exits with status 0 on SIGTERM or SIGINT. In a test, run it in a thread instead:
``FakeWarehouse(secret=...).start()`` ... ``.stop()`` (or ``with FakeWarehouse(...)``).

Fulfilment requests, ``POST /fulfilment-requests`` (what ``HttpWarehouseGateway`` sends):

* ``X-OMS-Signature`` must verify with the secret (``core.signing``, 300 s
  tolerance), else 401 ``{"status": "error", "code": "signature_invalid"}``.
* ``Idempotency-Key`` is required (400). A key seen before with the same JSON body gets
  the stored answer again, with ``Idempotent-Replayed: true``: not a new fulfilment. The
  same key with another body gets 400 ``idempotency_key_reused``. Only accepted and
  rejected answers are stored; 400, 401 and 500 are not.
* A body that is not a fulfilment request gets 400 ``invalid_request``.
* A request with a line whose SKU is in ``reject_skus`` gets 409 ``{"status":
  "rejected", "code": "out_of_stock", "reason": ...}``. Otherwise 201 ``{"status":
  "accepted", "shipment_reference": "shp_...", "request_id": ...}``.

Callbacks: ``ship_after`` seconds after accepting, the fake POSTs ``{"event":
"shipped", "event_id", "shipment_reference", "request_id", "order_number",
"warehouse_code", "carrier": "DHL", "tracking_number", "occurred_at"}`` to the request's
``callback_url``; ``deliver_after`` seconds after the shipped callback succeeded, the same
with ``"event": "delivered"``. Each is signed with the same secret (``X-OMS-Signature``)
and carries ``X-Warehouse-Code``. A callback that fails (connection error, timeout,
non-2xx) is retried with the same body and ``event_id``, re-signed, up to
``callback_attempts`` times with exponential backoff from ``callback_backoff`` seconds;
when every attempt fails the shipment stops there (``state: "callback_failed"``) and
``delivered`` is never sent, so ``shipped`` always comes first.

Control API (JSON, no authentication, loopback only; ``ControlClient`` wraps it):

* ``GET /_control/behaviour``; ``POST /_control/behaviour`` with any of ``{"mode":
  "accept" | "reject" | "error500" | "hang", "count": N}`` (the next N fulfilment
  requests, then back to accept; no count: until changed), ``{"reject_skus": [...]}``,
  ``{"ship_after": s, "deliver_after": s, "auto_callbacks": bool}``, ``hang_seconds``,
  ``callback_attempts``, ``callback_backoff``, ``callback_timeout``. Answers the whole
  behaviour. ``reject``: every new request is rejected (``cannot_fulfil``).
  ``error500``: answer 500 before doing anything (not carried out, nothing stored).
  ``hang``: carry the request out as usual (it is stored, a shipment may start), then
  withhold the answer for ``hang_seconds`` and close the connection: the client cannot
  tell what happened, and a retry with the same key gets the stored answer.
* ``GET /_control/requests``: every fulfilment request seen, oldest first: ``seq``,
  ``idempotency_key``, ``body`` (parsed JSON, or text), ``signature_ok``,
  ``signature_error``, ``mode``, ``status`` (the answer's status), ``answered`` (false
  when withheld), ``duplicate``, ``shipment_reference``.
* ``GET /_control/shipments``: every shipment and its ``state`` (accepted, shipped,
  delivered, callback_failed). ``GET /_control/callbacks``: every callback attempt.
* ``POST /_control/shipments/<reference>/shipped`` (or ``/delivered``): send that callback
  now, with retries, and answer how it went; meant for ``auto_callbacks: false``.
* ``POST /_control/reset``: forget requests, keys, shipments and callbacks, cancel pending
  callbacks and restore the start-up behaviour.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import ipaddress
import json
import logging
import signal
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from core.signing import SIGNATURE_HEADER, SignatureInvalid, sign, verify

READY_PREFIX = "fake-warehouse ready "
REQUEST_PATH = "/fulfilment-requests"
CONTROL_PREFIX = "/_control/"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
WAREHOUSE_CODE_HEADER = "X-Warehouse-Code"
MODES = ("accept", "reject", "error500", "hang")
EVENTS = ("shipped", "delivered")
CARRIER = "DHL"
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1024 * 1024
SOCKET_TIMEOUT_SECONDS = 10.0

logger = logging.getLogger("fakes.warehouse")


@dataclass
class Behaviour:
    """How the fake answers; every field can be changed at run time."""

    mode: str = "accept"
    count: int | None = None  # requests left in ``mode``; None: until changed
    reject_skus: list[str] = field(default_factory=list)
    ship_after: float = 2.0
    deliver_after: float = 4.0
    auto_callbacks: bool = True
    hang_seconds: float = 30.0
    callback_attempts: int = 5
    callback_backoff: float = 0.5
    callback_timeout: float = 5.0

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "count": self.count,
            "reject_skus": list(self.reject_skus),
            "ship_after": self.ship_after,
            "deliver_after": self.deliver_after,
            "auto_callbacks": self.auto_callbacks,
            "hang_seconds": self.hang_seconds,
            "callback_attempts": self.callback_attempts,
            "callback_backoff": self.callback_backoff,
            "callback_timeout": self.callback_timeout,
        }

    def changed(self, changes: dict[str, Any]) -> Behaviour:
        """Return a copy with ``changes`` applied; ValueError names a bad one."""
        unknown = set(changes) - set(self.as_json())
        if unknown:
            raise ValueError(f"unknown behaviour fields: {', '.join(sorted(unknown))}")
        if "count" in changes and "mode" not in changes:
            raise ValueError("count applies to a mode: send mode with it")
        updated = replace(self, reject_skus=list(self.reject_skus))
        for name, value in changes.items():
            setattr(updated, name, _validated(name, value))
        if "mode" in changes and "count" not in changes:
            updated.count = None
        if updated.mode == "accept":
            updated.count = None
        return updated


def _validated(name: str, value: Any) -> Any:
    if name == "mode":
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        return value
    if name == "count":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("count must be a positive integer or null")
        return value
    if name == "reject_skus":
        if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
            raise ValueError("reject_skus must be a list of SKUs")
        return list(value)
    if name == "auto_callbacks":
        if not isinstance(value, bool):
            raise ValueError("auto_callbacks must be true or false")
        return value
    if name == "callback_attempts":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("callback_attempts must be a positive integer")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds")
    if name == "callback_timeout" and value == 0:
        raise ValueError("callback_timeout must be positive")
    return float(value)


@dataclass(frozen=True)
class _Answer:
    status: int
    payload: dict[str, Any]


@dataclass
class _Stored:
    canonical_body: str
    answer: _Answer


@dataclass
class _Shipment:
    shipment_reference: str
    request_id: str
    order_number: str
    warehouse_code: str
    callback_url: str
    tracking_number: str
    accepted_at: str
    state: str = "accepted"
    cancelled: threading.Event = field(default_factory=threading.Event)
    event_ids: dict[str, str] = field(default_factory=dict)
    occurred_at: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_json(self) -> dict[str, Any]:
        return {
            "shipment_reference": self.shipment_reference,
            "request_id": self.request_id,
            "order_number": self.order_number,
            "warehouse_code": self.warehouse_code,
            "callback_url": self.callback_url,
            "carrier": CARRIER,
            "tracking_number": self.tracking_number,
            "accepted_at": self.accepted_at,
            "state": self.state,
        }

    def event_payload(self, event: str) -> dict[str, Any]:
        """The callback body for ``event``; the same on every retry."""
        event_id = self.event_ids.setdefault(event, f"evt_{uuid.uuid4().hex}")
        occurred_at = self.occurred_at.setdefault(event, _now_iso())
        return {
            "event": event,
            "event_id": event_id,
            "shipment_reference": self.shipment_reference,
            "request_id": self.request_id,
            "order_number": self.order_number,
            "warehouse_code": self.warehouse_code,
            "carrier": CARRIER,
            "tracking_number": self.tracking_number,
            "occurred_at": occurred_at,
        }


class FakeWarehouse:
    """The fake warehouse service; run it in a thread (tests) or via ``main`` (CLI)."""

    def __init__(
        self,
        *,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        ship_after: float = 2.0,
        deliver_after: float = 4.0,
        reject_skus: Iterable[str] = (),
        auto_callbacks: bool = True,
        hang_seconds: float = 30.0,
        callback_attempts: int = 5,
        callback_backoff: float = 0.5,
        callback_timeout: float = 5.0,
        signature_tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
    ) -> None:
        if not secret:
            raise ValueError("a signing secret is required")
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{host} is not a loopback address; use 127.0.0.1")
        self.secret = secret
        self.host = host
        self.signature_tolerance = signature_tolerance
        self._requested_port = port
        self._initial = Behaviour().changed(
            {
                "reject_skus": list(reject_skus),
                "ship_after": ship_after,
                "deliver_after": deliver_after,
                "auto_callbacks": auto_callbacks,
                "hang_seconds": hang_seconds,
                "callback_attempts": callback_attempts,
                "callback_backoff": callback_backoff,
                "callback_timeout": callback_timeout,
            }
        )
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._behaviour = copy.deepcopy(self._initial)
        self._stored: dict[str, _Stored] = {}
        self._requests: list[dict[str, Any]] = []
        self._shipments: dict[str, _Shipment] = {}
        self._callbacks: list[dict[str, Any]] = []
        self._threads: list[threading.Thread] = []
        self._active_handlers = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake warehouse is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8430``."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests_url(self) -> str:
        """Where fulfilment requests go: the URL to configure for a warehouse."""
        return f"{self.url}{REQUEST_PATH}"

    def start(self) -> FakeWarehouse:
        """Listen and serve in a background thread; return at once, ready to answer."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), self)
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"fake-warehouse-{self.port}",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, cancel pending callbacks, cut hangs short, wait for threads."""
        server = self._server
        if server is None:
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._serve_thread is not None:
            self._serve_thread.join(timeout)
        with self._idle:
            self._idle.wait_for(
                lambda: self._active_handlers == 0, max(0.0, deadline - time.monotonic())
            )
            # After the handlers: none of them can start a shipment any more.
            for shipment in self._shipments.values():
                shipment.cancelled.set()
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._serve_thread = None

    def __enter__(self) -> FakeWarehouse:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control, in process (the HTTP control API calls these) -------------------------

    def behaviour(self) -> dict[str, Any]:
        with self._lock:
            return self._behaviour.as_json()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change the behaviour (fields as ``POST /_control/behaviour``); return it."""
        with self._lock:
            self._behaviour = self._behaviour.changed(changes)
            logger.info("behaviour: %s", self._behaviour.as_json())
            return self._behaviour.as_json()

    def requests(self) -> list[dict[str, Any]]:
        """Every fulfilment request seen so far, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._requests)

    def shipments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [shipment.as_json() for shipment in self._shipments.values()]

    def callbacks(self) -> list[dict[str, Any]]:
        """Every callback attempt so far, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._callbacks)

    def reset(self) -> None:
        """Forget everything seen, cancel pending callbacks, restore start-up behaviour."""
        with self._lock:
            for shipment in self._shipments.values():
                shipment.cancelled.set()
            self._behaviour = copy.deepcopy(self._initial)
            self._stored.clear()
            self._requests.clear()
            self._shipments.clear()
            self._callbacks.clear()

    def send_event(self, shipment_reference: str, event: str) -> dict[str, Any]:
        """Send the ``shipped`` or ``delivered`` callback of a shipment now, with retries.

        Raise ``KeyError`` for an unknown shipment, ``ValueError`` for an unknown event or
        ``delivered`` before ``shipped``.
        """
        if event not in EVENTS:
            raise ValueError(f"event must be one of {', '.join(EVENTS)}")
        with self._lock:
            shipment = self._shipments[shipment_reference]
            behaviour = copy.deepcopy(self._behaviour)
        if event == "delivered" and shipment.state not in ("shipped", "delivered"):
            raise ValueError(f"shipment {shipment_reference} is {shipment.state}, not shipped")
        delivered = self._deliver(shipment, event, behaviour)
        return {"delivered": delivered, "shipment": shipment.as_json()}

    # -- fulfilment requests ------------------------------------------------------------

    def _take_mode(self) -> str:
        with self._lock:
            behaviour = self._behaviour
            mode = behaviour.mode
            if behaviour.count is not None:
                behaviour.count -= 1
                if behaviour.count <= 0:
                    behaviour.mode, behaviour.count = "accept", None
            return mode

    def _handle_fulfilment(
        self, body: bytes, key: str | None, signature: str | None
    ) -> tuple[_Answer, dict[str, Any], bool, float]:
        """Decide the answer to one request; return it, its record, whether to withhold
        it and for how long."""
        record: dict[str, Any] = {
            "received_at": _now_iso(),
            "idempotency_key": key,
            "body": _readable(body),
            "signature_ok": False,
            "signature_error": None,
            "mode": None,
            "status": None,
            "answered": True,
            "duplicate": False,
            "shipment_reference": None,
        }
        mode = self._take_mode()
        record["mode"] = mode
        withhold = mode == "hang"
        with self._lock:
            hang_seconds = self._behaviour.hang_seconds
        if mode == "error500":
            answer = _error(500, "internal_error", "the fake warehouse is told to fail")
            return self._recorded(record, answer), record, False, 0.0
        try:
            verify(body, signature, self.secret, self.signature_tolerance)
        except SignatureInvalid as exc:
            record["signature_error"] = exc.reason
            answer = _error(401, "signature_invalid", exc.message, reason=exc.reason)
            return self._recorded(record, answer), record, withhold, hang_seconds
        record["signature_ok"] = True
        if not key:
            answer = _error(400, "idempotency_key_missing", f"send {IDEMPOTENCY_KEY_HEADER}")
            return self._recorded(record, answer), record, withhold, hang_seconds
        try:
            request = _parse_fulfilment_request(body)
        except ValueError as exc:
            answer = _error(400, "invalid_request", str(exc))
            return self._recorded(record, answer), record, withhold, hang_seconds
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
        shipment: _Shipment | None = None
        with self._lock:
            stored = self._stored.get(key)
            if stored is not None and stored.canonical_body != canonical:
                answer = _error(
                    400, "idempotency_key_reused", "this key was used with another body"
                )
            elif stored is not None:
                answer = stored.answer
                record["duplicate"] = True
            else:
                answer, shipment = self._decide(request, mode)
                self._stored[key] = _Stored(canonical_body=canonical, answer=answer)
            reference = answer.payload.get("shipment_reference")
            record["shipment_reference"] = reference
            behaviour = copy.deepcopy(self._behaviour)
        if shipment is not None and behaviour.auto_callbacks:
            self._start_shipment(shipment, behaviour)
        return self._recorded(record, answer), record, withhold, hang_seconds

    def _decide(self, request: dict[str, Any], mode: str) -> tuple[_Answer, _Shipment | None]:
        """Accept or reject a new request (lock held)."""
        request_id = request["request_id"]
        if mode == "reject":
            return _rejected(request_id, "cannot_fulfil", "the warehouse cannot fulfil it"), None
        refused = sorted(
            {line["sku"] for line in request["lines"]} & set(self._behaviour.reject_skus)
        )
        if refused:
            return _rejected(
                request_id, "out_of_stock", f"out of stock: {', '.join(refused)}"
            ), None
        shipment = _Shipment(
            shipment_reference=f"shp_{uuid.uuid4().hex[:20]}",
            request_id=request_id,
            order_number=request["order_number"],
            warehouse_code=request["warehouse_code"],
            callback_url=request["callback_url"],
            tracking_number=f"JJD{uuid.uuid4().int % 10**18:018d}",
            accepted_at=_now_iso(),
        )
        self._shipments[shipment.shipment_reference] = shipment
        answer = _Answer(
            201,
            {
                "status": "accepted",
                "shipment_reference": shipment.shipment_reference,
                "request_id": request_id,
            },
        )
        return answer, shipment

    def _recorded(self, record: dict[str, Any], answer: _Answer) -> _Answer:
        record["status"] = answer.status
        with self._lock:
            record["seq"] = len(self._requests) + 1
            self._requests.append(record)
        logger.info(
            "request key=%s status=%s duplicate=%s mode=%s",
            record["idempotency_key"],
            answer.status,
            record["duplicate"],
            record["mode"],
        )
        return answer

    def _mark_unanswered(self, record: dict[str, Any]) -> None:
        with self._lock:
            record["answered"] = False

    # -- callbacks ----------------------------------------------------------------------

    def _start_shipment(self, shipment: _Shipment, behaviour: Behaviour) -> None:
        thread = threading.Thread(
            target=self._run_shipment,
            args=(shipment, behaviour),
            name=f"fake-warehouse-{shipment.shipment_reference}",
            daemon=True,
        )
        with self._lock:
            if self._stopping.is_set() or shipment.cancelled.is_set():
                return
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _run_shipment(self, shipment: _Shipment, behaviour: Behaviour) -> None:
        if shipment.cancelled.wait(behaviour.ship_after):
            return
        if not self._deliver(shipment, "shipped", behaviour):
            return
        if shipment.cancelled.wait(behaviour.deliver_after):
            return
        self._deliver(shipment, "delivered", behaviour)

    def _deliver(self, shipment: _Shipment, event: str, behaviour: Behaviour) -> bool:
        """POST one signed callback, retrying with backoff; tell whether it got a 2xx."""
        with shipment.lock:
            body = json.dumps(shipment.event_payload(event), separators=(",", ":")).encode()
            for attempt in range(1, behaviour.callback_attempts + 1):
                if shipment.cancelled.is_set():
                    return False
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "fake-warehouse/1",
                    WAREHOUSE_CODE_HEADER: shipment.warehouse_code,
                    SIGNATURE_HEADER: sign(body, self.secret, int(time.time())),
                }
                status, error = _post(
                    shipment.callback_url, body, headers, behaviour.callback_timeout
                )
                ok = status is not None and 200 <= status < 300
                self._log_callback(shipment, event, attempt, status, error)
                if ok:
                    shipment.state = event
                    return True
                if attempt < behaviour.callback_attempts and shipment.cancelled.wait(
                    behaviour.callback_backoff * 2 ** (attempt - 1)
                ):
                    return False
            shipment.state = "callback_failed"
            return False

    def _log_callback(
        self, shipment: _Shipment, event: str, attempt: int, status: int | None, error: str | None
    ) -> None:
        logger.info(
            "callback %s %s attempt %d -> %s",
            event,
            shipment.shipment_reference,
            attempt,
            status if status is not None else error,
        )
        if shipment.cancelled.is_set():
            return
        with self._lock:
            self._callbacks.append(
                {
                    "at": _now_iso(),
                    "event": event,
                    "event_id": shipment.event_ids[event],
                    "shipment_reference": shipment.shipment_reference,
                    "url": shipment.callback_url,
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                }
            )

    # -- control over HTTP --------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> _Answer:
        route = path.removeprefix(CONTROL_PREFIX).strip("/")
        try:
            changes = json.loads(body) if body.strip() else {}
        except ValueError:
            return _error(400, "invalid_json", "the body is not JSON")
        if not isinstance(changes, dict):
            return _error(400, "invalid_json", "the body is not a JSON object")
        if route == "behaviour" and method == "GET":
            return _Answer(200, self.behaviour())
        if route == "behaviour" and method == "POST":
            try:
                return _Answer(200, self.configure(**changes))
            except ValueError as exc:
                return _error(400, "invalid_behaviour", str(exc))
        if route == "requests" and method == "GET":
            return _Answer(200, {"requests": self.requests()})
        if route == "shipments" and method == "GET":
            return _Answer(200, {"shipments": self.shipments()})
        if route == "callbacks" and method == "GET":
            return _Answer(200, {"callbacks": self.callbacks()})
        if route == "reset" and method == "POST":
            self.reset()
            return _Answer(200, {"reset": True})
        parts = route.split("/")
        if len(parts) == 3 and parts[0] == "shipments" and method == "POST":
            try:
                return _Answer(200, self.send_event(unquote(parts[1]), parts[2]))
            except KeyError:
                return _error(404, "unknown_shipment", f"no shipment {parts[1]}")
            except ValueError as exc:
                return _error(409, "invalid_event", str(exc))
        return _error(404, "not_found", f"no control route {method} {path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeWarehouse) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = SOCKET_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        fake = self.server.fake
        self.close_connection = True
        with fake._lock:
            fake._active_handlers += 1
        try:
            body = self._read_body()
            if body is None:
                return
            path = urlsplit(self.path).path
            if path.startswith(CONTROL_PREFIX):
                self._answer(fake._control(self.command, path, body))
            elif path == REQUEST_PATH and self.command == "POST":
                self._fulfil(body)
            elif path == REQUEST_PATH:
                self._answer(_error(405, "method_not_allowed", "POST a fulfilment request"))
            else:
                self._answer(_error(404, "not_found", f"no route {self.command} {path}"))
        finally:
            with fake._idle:
                fake._active_handlers -= 1
                fake._idle.notify_all()

    def _fulfil(self, body: bytes) -> None:
        fake = self.server.fake
        answer, record, withhold, hang_seconds = fake._handle_fulfilment(
            body, self.headers.get(IDEMPOTENCY_KEY_HEADER), self.headers.get(SIGNATURE_HEADER)
        )
        if withhold:
            fake._mark_unanswered(record)
            fake._stopping.wait(hang_seconds)
            return  # close the connection without a word
        extra = {"Idempotent-Replayed": "true"} if record["duplicate"] else {}
        self._answer(answer, extra)

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if self.command in ("GET", "DELETE"):
                return b""
            self._answer(_error(411, "length_required", "send Content-Length"))
            return None
        try:
            length = int(length_header)
        except ValueError:
            self._answer(_error(400, "bad_content_length", "Content-Length is not a number"))
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            self._answer(_error(413, "too_large", f"at most {MAX_BODY_BYTES} bytes"))
            return None
        return self.rfile.read(length) if length else b""

    def _answer(self, answer: _Answer, extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(answer.payload).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _parse_fulfilment_request(body: bytes) -> dict[str, Any]:
    """Check the shape ``HttpWarehouseGateway`` sends; ValueError says what is wrong."""
    try:
        request = json.loads(body)
    except ValueError as exc:
        raise ValueError("the body is not JSON") from exc
    if not isinstance(request, dict):
        raise ValueError("the body is not a JSON object")
    for name in ("request_id", "order_number", "warehouse_code", "callback_url"):
        if not isinstance(request.get(name), str) or not request[name]:
            raise ValueError(f"{name} must be a non-empty string")
    lines = request.get("lines")
    if not isinstance(lines, list) or not lines:
        raise ValueError("lines must be a non-empty list")
    for line in lines:
        if not isinstance(line, dict):
            raise ValueError("every line must be an object")
        if not isinstance(line.get("sku"), str) or not line["sku"]:
            raise ValueError("every line needs a sku")
        if not isinstance(line.get("name"), str):
            raise ValueError("every line needs a name")
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise ValueError("every line needs a positive integer quantity")
    address = request.get("shipping_address")
    if not isinstance(address, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in address.items()
    ):
        raise ValueError("shipping_address must be an object of strings")
    parts = urlsplit(request["callback_url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("callback_url must be an http(s) URL")
    return request


def _post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int | None, str | None]:
    """POST ``body``; return (status, None) or (None, what went wrong). No proxies."""
    parts = urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, None
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


def _rejected(request_id: str, code: str, reason: str) -> _Answer:
    return _Answer(
        409, {"status": "rejected", "code": code, "reason": reason, "request_id": request_id}
    )


def _error(status: int, code: str, detail: str, **extra: Any) -> _Answer:
    return _Answer(status, {"status": "error", "code": code, "detail": detail, **extra})


def _readable(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class ControlClient:
    """The control API of a fake warehouse running elsewhere (a subprocess, a container).

    Same method names as ``FakeWarehouse``: ``configure``, ``behaviour``, ``requests``,
    ``shipments``, ``callbacks``, ``send_event``, ``reset``.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the fake warehouse speaks plain http, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    @property
    def requests_url(self) -> str:
        return f"{self.url}{REQUEST_PATH}"

    def behaviour(self) -> dict[str, Any]:
        return self._call("GET", "behaviour")

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "behaviour", changes)

    def requests(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "requests")["requests"])

    def shipments(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "shipments")["shipments"])

    def callbacks(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "callbacks")["callbacks"])

    def send_event(self, shipment_reference: str, event: str) -> dict[str, Any]:
        return self._call("POST", f"shipments/{quote(shipment_reference, safe='')}/{event}")

    def reset(self) -> None:
        self._call("POST", "reset")

    def _call(self, method: str, route: str, payload: dict[str, Any] | None = None) -> Any:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(
            parts.hostname or "", parts.port, timeout=self.timeout
        )
        body = json.dumps(payload).encode() if payload is not None else b""
        try:
            connection.request(
                method,
                f"{parts.path}{CONTROL_PREFIX}{route}",
                body=body if method == "POST" else None,
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            answer = json.loads(response.read() or b"{}")
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"control {method} {route}: {response.status} {answer}")
        return answer


def _loopback_host(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ipaddress.AddressValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address") from exc
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(f"{value} is not a loopback address; use 127.0.0.1")
    return value


def _sku_list(value: str) -> list[str]:
    return [sku.strip() for sku in value.split(",") if sku.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fakes.warehouse",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", type=_loopback_host, default="127.0.0.1")
    parser.add_argument("--secret", required=True, help="the HMAC secret shared with oms")
    parser.add_argument("--ship-after", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--deliver-after", type=float, default=4.0, metavar="SECONDS")
    parser.add_argument("--reject-skus", type=_sku_list, default=[], metavar="A,B")
    parser.add_argument("--no-auto-callbacks", action="store_true")
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--callback-attempts", type=int, default=5)
    parser.add_argument("--callback-backoff", type=float, default=0.5, metavar="SECONDS")
    parser.add_argument("--verbose", action="store_true", help="log requests and callbacks")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(message)s",
    )
    try:
        fake = FakeWarehouse(
            secret=args.secret,
            host=args.host,
            port=args.port,
            ship_after=args.ship_after,
            deliver_after=args.deliver_after,
            reject_skus=args.reject_skus,
            auto_callbacks=not args.no_auto_callbacks,
            hang_seconds=args.hang_seconds,
            callback_attempts=args.callback_attempts,
            callback_backoff=args.callback_backoff,
        )
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    fake.start()
    print(f"{READY_PREFIX}{fake.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
