"""``FakeWarehouse``: its state, its lifecycle, and how it answers fulfilment requests
and withdrawals."""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from core.signing import SignatureInvalid, verify
from fakes.warehouse.behaviour import Behaviour
from fakes.warehouse.callbacks import EVENTS, CallbackSender, Shipment
from fakes.warehouse.server import Server
from fakes.warehouse.wire import (
    IDEMPOTENCY_KEY_HEADER,
    REQUEST_PATH,
    SIGNATURE_TOLERANCE_SECONDS,
    Answer,
    Reply,
    error,
    now_iso,
    parse_fulfilment_request,
    parse_withdraw_request,
    readable,
    refused,
    rejected,
    withdrawn,
)

logger = logging.getLogger(__name__)


@dataclass
class _Stored:
    canonical_body: str
    answer: Answer


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
        container: bool = False,
    ) -> None:
        if not secret:
            raise ValueError("a signing secret is required")
        # Inside a private container network (the compose demo) it listens on all its
        # addresses; anywhere else on loopback only.
        if not container and not ipaddress.ip_address(host).is_loopback:
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
        self._shipments: dict[str, Shipment] = {}
        self._withdrawals: list[dict[str, Any]] = []
        self._withdrawn_request_ids: set[str] = set()
        self._active_handlers = 0
        self._stopping = threading.Event()
        self._callbacks = CallbackSender(secret, self._stopping)
        self._server: Server | None = None
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
        self._server = Server((self.host, self._requested_port), self)
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
        self._callbacks.join(deadline)
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

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Count one HTTP request in progress, so ``stop`` can wait for it."""
        with self._lock:
            self._active_handlers += 1
        try:
            yield
        finally:
            with self._idle:
                self._active_handlers -= 1
                self._idle.notify_all()

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
        return self._callbacks.attempts()

    def withdrawals(self) -> list[dict[str, Any]]:
        """Every withdraw call seen so far, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._withdrawals)

    def reset(self) -> None:
        """Forget everything seen, cancel pending callbacks, restore start-up behaviour."""
        with self._lock:
            for shipment in self._shipments.values():
                shipment.cancelled.set()
            self._behaviour = copy.deepcopy(self._initial)
            self._stored.clear()
            self._requests.clear()
            self._shipments.clear()
            self._withdrawals.clear()
            self._withdrawn_request_ids.clear()
        self._callbacks.forget()

    def send_event(self, shipment_reference: str, event: str) -> dict[str, Any]:
        """Send the ``shipped`` or ``delivered`` callback of a shipment now, with retries.

        Raise ``KeyError`` for an unknown shipment, ``ValueError`` for an unknown event, a
        withdrawn shipment or ``delivered`` before ``shipped``.
        """
        if event not in EVENTS:
            raise ValueError(f"event must be one of {', '.join(EVENTS)}")
        with self._lock:
            shipment = self._shipments[shipment_reference]
            behaviour = copy.deepcopy(self._behaviour)
        if shipment.withdrawn:
            raise ValueError(f"shipment {shipment_reference} is withdrawn")
        if event == "delivered" and shipment.state not in ("shipped", "delivered"):
            raise ValueError(f"shipment {shipment_reference} is {shipment.state}, not shipped")
        delivered = self._callbacks.send(shipment, event, behaviour)
        return {"delivered": delivered, "shipment": shipment.as_json()}

    def send_return_received(
        self, shipment_reference: str, return_id: str, lines: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Report a customer's return (units of this shipment's order) received here: the
        signed ``return_received`` callback to the shipment's callback URL, with retries.
        ``lines``: ``[{"sku", "disposition": "restock" | "dispose"}]``.

        Raise ``KeyError`` for an unknown shipment.
        """
        with self._lock:
            shipment = self._shipments[shipment_reference]
            behaviour = copy.deepcopy(self._behaviour)
        delivered = self._callbacks.send_return_received(
            shipment=shipment, return_id=return_id, lines=lines, behaviour=behaviour
        )
        return {"delivered": delivered, "return_id": return_id}

    # -- fulfilment requests and withdrawals --------------------------------------------

    def handle_fulfilment(self, body: bytes, key: str | None, signature: str | None) -> Reply:
        """Decide the answer to one fulfilment request, and carry it out."""
        mode = self._take_mode()
        record = _new_record(body, key, mode, shipment_reference=None)
        return self._handle(
            self._requests, record, body, key, signature, parse_fulfilment_request, self._fulfil
        )

    def handle_withdraw(
        self, request_id: str, body: bytes, key: str | None, signature: str | None
    ) -> Reply:
        """Decide the answer to one withdraw call for ``request_id``, and carry it out."""
        with self._lock:
            mode = self._behaviour.withdraw_mode
        record = _new_record(body, key, mode, request_id=request_id, result=None)
        return self._handle(
            self._withdrawals,
            record,
            body,
            key,
            signature,
            lambda raw: parse_withdraw_request(raw, request_id),
            self._withdraw,
        )

    def withhold(self, reply: Reply) -> None:
        """Keep the answer to itself for ``reply.hang_seconds`` (less when stopping)."""
        with self._lock:
            reply.record["answered"] = False
        self._stopping.wait(reply.hang_seconds)

    def _take_mode(self) -> str:
        with self._lock:
            behaviour = self._behaviour
            mode = behaviour.mode
            if behaviour.count is not None:
                behaviour.count -= 1
                if behaviour.count <= 0:
                    behaviour.mode, behaviour.count = "accept", None
            return mode

    def _handle(
        self,
        records: list[dict[str, Any]],
        record: dict[str, Any],
        body: bytes,
        key: str | None,
        signature: str | None,
        parse: Callable[[bytes], dict[str, Any]],
        carry_out: Callable[[str, dict[str, Any], dict[str, Any]], Answer],
    ) -> Reply:
        """Answer one signed request in ``record["mode"]``; add ``record`` to ``records``."""
        mode = record["mode"]
        with self._lock:
            hang_seconds = self._behaviour.hang_seconds if mode == "hang" else None
        if mode == "error500":
            answer = error(500, "internal_error", "the fake warehouse is told to fail")
            return Reply(self._recorded(records, record, answer), record)
        answer = self._carried_out(record, body, key, signature, parse, carry_out)
        return Reply(
            self._recorded(records, record, answer),
            record,
            replayed=record["duplicate"],
            hang_seconds=hang_seconds,
        )

    def _carried_out(
        self,
        record: dict[str, Any],
        body: bytes,
        key: str | None,
        signature: str | None,
        parse: Callable[[bytes], dict[str, Any]],
        carry_out: Callable[[str, dict[str, Any], dict[str, Any]], Answer],
    ) -> Answer:
        """Check the signature, the key and the body, then carry the request out."""
        try:
            verify(body, signature, self.secret, self.signature_tolerance)
        except SignatureInvalid as exc:
            record["signature_error"] = exc.reason
            return error(401, "signature_invalid", exc.message, reason=exc.reason)
        record["signature_ok"] = True
        if not key:
            return error(400, "idempotency_key_missing", f"send {IDEMPOTENCY_KEY_HEADER}")
        try:
            request = parse(body)
        except ValueError as exc:
            return error(400, "invalid_request", str(exc))
        return carry_out(key, request, record)

    def _once(
        self,
        key: str,
        request: dict[str, Any],
        record: dict[str, Any],
        decide: Callable[[], tuple[Answer, Shipment | None]],
    ) -> tuple[Answer, Shipment | None]:
        """Answer a key seen before with its stored answer, else ``decide`` and store the
        answer (lock held)."""
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
        stored = self._stored.get(key)
        if stored is not None and stored.canonical_body != canonical:
            answer = error(400, "idempotency_key_reused", "this key was used with another body")
            return answer, None
        if stored is not None:
            record["duplicate"] = True
            return stored.answer, None
        answer, shipment = decide()
        self._stored[key] = _Stored(canonical_body=canonical, answer=answer)
        return answer, shipment

    def _fulfil(self, key: str, request: dict[str, Any], record: dict[str, Any]) -> Answer:
        shipment: Shipment | None = None
        with self._lock:
            request_id = request["request_id"]
            if request_id in self._withdrawn_request_ids:
                # Whatever its key: a delayed request cannot resurrect a withdrawn one.
                answer = rejected(request_id, "withdrawn", "the request was withdrawn")
            else:
                answer, shipment = self._once(
                    key, request, record, lambda: self._decide(request, record["mode"])
                )
            record["shipment_reference"] = answer.payload.get("shipment_reference")
            behaviour = copy.deepcopy(self._behaviour)
        if shipment is not None and behaviour.auto_callbacks:
            self._callbacks.start(shipment, behaviour)
        return answer

    def _withdraw(self, key: str, request: dict[str, Any], record: dict[str, Any]) -> Answer:
        with self._lock:
            answer, _ = self._once(
                key,
                request,
                record,
                lambda: (self._withdraw_now(request["request_id"], record["mode"]), None),
            )
            record["result"] = answer.payload.get("status")
        return answer

    def _decide(self, request: dict[str, Any], mode: str) -> tuple[Answer, Shipment | None]:
        """Accept or reject a new request (lock held)."""
        request_id = request["request_id"]
        if mode == "reject":
            return rejected(request_id, "cannot_fulfil", "the warehouse cannot fulfil it"), None
        missing = sorted(
            {line["sku"] for line in request["lines"]} & set(self._behaviour.reject_skus)
        )
        if missing:
            return rejected(request_id, "out_of_stock", f"out of stock: {', '.join(missing)}"), None
        shipment = Shipment(
            shipment_reference=f"shp_{uuid.uuid4().hex[:20]}",
            request_id=request_id,
            order_number=request["order_number"],
            warehouse_code=request["warehouse_code"],
            callback_url=request["callback_url"],
            tracking_number=f"JJD{uuid.uuid4().int % 10**18:018d}",
            accepted_at=now_iso(),
        )
        self._shipments[shipment.shipment_reference] = shipment
        answer = Answer(
            201,
            {
                "status": "accepted",
                "shipment_reference": shipment.shipment_reference,
                "request_id": request_id,
            },
        )
        return answer, shipment

    def _withdraw_now(self, request_id: str, mode: str) -> Answer:
        """Withdraw every shipment of ``request_id`` unless one has shipped (lock held)."""
        if mode == "refuse":
            return refused(request_id, "already_shipped", "the fake warehouse is told to refuse")
        for shipment in self._shipments.values():
            if shipment.request_id == request_id and not shipment.withdraw():
                return refused(
                    request_id,
                    "already_shipped",
                    f"shipment {shipment.shipment_reference} has already shipped",
                )
        # Also for a request never seen: it is refused should it arrive later.
        self._withdrawn_request_ids.add(request_id)
        return withdrawn(request_id)

    def _recorded(
        self, records: list[dict[str, Any]], record: dict[str, Any], answer: Answer
    ) -> Answer:
        """Append ``record`` with the answer's status to ``records``; return the answer."""
        record["status"] = answer.status
        with self._lock:
            record["seq"] = len(records) + 1
            records.append(record)
        logger.info(
            "%s key=%s status=%s duplicate=%s mode=%s",
            "withdraw" if records is self._withdrawals else "request",
            record["idempotency_key"],
            answer.status,
            record["duplicate"],
            record["mode"],
        )
        return answer


def _new_record(body: bytes, key: str | None, mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "received_at": now_iso(),
        "idempotency_key": key,
        "body": readable(body),
        "signature_ok": False,
        "signature_error": None,
        "mode": mode,
        "status": None,
        "answered": True,
        "duplicate": False,
        **extra,
    }
