"""Shipments and their ``shipped`` / ``delivered`` callbacks to oms, and the
``return_received`` callback of a customer's return: signed, retried."""

from __future__ import annotations

import copy
import http.client
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from core.signing import SIGNATURE_HEADER, sign
from fakes.warehouse.behaviour import Behaviour
from fakes.warehouse.wire import WAREHOUSE_CODE_HEADER, now_iso

EVENTS = ("shipped", "delivered")
CARRIER = "DHL"

logger = logging.getLogger(__name__)


@dataclass
class Shipment:
    """One accepted request on its way: accepted, then shipped and delivered, unless
    withdrawn before it ships."""

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
    lock: threading.Lock = field(default_factory=threading.Lock)  # one delivery at a time
    # Shipping and withdrawing exclude each other: ``guard`` makes the choice atomic.
    dispatched: bool = False
    withdrawn: bool = False
    guard: threading.Lock = field(default_factory=threading.Lock)

    def dispatch(self) -> bool:
        """Ship the parcel unless it was withdrawn; tell whether it has shipped."""
        with self.guard:
            if not self.withdrawn:
                self.dispatched = True
            return self.dispatched

    def withdraw(self) -> bool:
        """Withdraw the shipment and cancel its callbacks unless the parcel has shipped;
        tell whether it is withdrawn."""
        with self.guard:
            if self.dispatched:
                return False
            self.withdrawn = True
            self.state = "withdrawn"
            self.cancelled.set()
            return True

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
        occurred_at = self.occurred_at.setdefault(event, now_iso())
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


class CallbackSender:
    """Send the callbacks of shipments, each shipment in its own thread; record attempts."""

    def __init__(self, secret: str, stopping: threading.Event) -> None:
        self._secret = secret
        self._stopping = stopping
        self._lock = threading.Lock()
        self._attempts: list[dict[str, Any]] = []
        self._threads: list[threading.Thread] = []

    def attempts(self) -> list[dict[str, Any]]:
        """Every callback attempt so far, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._attempts)

    def forget(self) -> None:
        """Forget the attempts; cancel the shipments first, so none is recorded later."""
        with self._lock:
            self._attempts.clear()

    def start(self, shipment: Shipment, behaviour: Behaviour) -> None:
        """Send ``shipped`` after ``ship_after``, then ``delivered``, in a new thread."""
        thread = threading.Thread(
            target=self._run,
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

    def join(self, deadline: float) -> None:
        """Wait for the shipment threads until ``deadline`` (``time.monotonic``)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def send(self, shipment: Shipment, event: str, behaviour: Behaviour) -> bool:
        """POST one signed callback, retrying with backoff; tell whether it got a 2xx."""
        with shipment.lock:
            # The first shipped callback is the moment the parcel leaves: too late to withdraw.
            if event == "shipped" and not shipment.dispatch():
                return False
            body = json.dumps(shipment.event_payload(event), separators=(",", ":")).encode()
            for attempt in range(1, behaviour.callback_attempts + 1):
                if shipment.cancelled.is_set():
                    return False
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "fake-warehouse/1",
                    WAREHOUSE_CODE_HEADER: shipment.warehouse_code,
                    SIGNATURE_HEADER: sign(body, self._secret, int(time.time())),
                }
                status, error = post(
                    shipment.callback_url, body, headers, behaviour.callback_timeout
                )
                ok = status is not None and 200 <= status < 300
                self._record(shipment, event, attempt, status, error)
                if ok:
                    shipment.state = event
                    return True
                if attempt < behaviour.callback_attempts and shipment.cancelled.wait(
                    behaviour.callback_backoff * 2 ** (attempt - 1)
                ):
                    return False
            shipment.state = "callback_failed"
            return False

    def send_return_received(
        self,
        *,
        shipment: Shipment,
        return_id: str,
        lines: list[dict[str, Any]],
        behaviour: Behaviour,
    ) -> bool:
        """POST one signed ``return_received`` callback (units of the shipment's order
        came back here), retrying with backoff; tell whether it got a 2xx."""
        payload = {
            "event": "return_received",
            "event_id": f"evt_{uuid.uuid4().hex}",
            "return_id": return_id,
            "order_number": shipment.order_number,
            "warehouse_code": shipment.warehouse_code,
            "lines": lines,
            "occurred_at": now_iso(),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        for attempt in range(1, behaviour.callback_attempts + 1):
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "fake-warehouse/1",
                WAREHOUSE_CODE_HEADER: shipment.warehouse_code,
                SIGNATURE_HEADER: sign(body, self._secret, int(time.time())),
            }
            status, error = post(shipment.callback_url, body, headers, behaviour.callback_timeout)
            with self._lock:
                self._attempts.append(
                    {
                        "at": now_iso(),
                        "event": "return_received",
                        "event_id": payload["event_id"],
                        "shipment_reference": shipment.shipment_reference,
                        "return_id": return_id,
                        "url": shipment.callback_url,
                        "attempt": attempt,
                        "status": status,
                        "error": error,
                    }
                )
            if status is not None and 200 <= status < 300:
                return True
            if attempt < behaviour.callback_attempts and self._stopping.wait(
                behaviour.callback_backoff * 2 ** (attempt - 1)
            ):
                return False
        return False

    def _run(self, shipment: Shipment, behaviour: Behaviour) -> None:
        if shipment.cancelled.wait(behaviour.ship_after):
            return
        if not self.send(shipment, "shipped", behaviour):
            return
        if shipment.cancelled.wait(behaviour.deliver_after):
            return
        self.send(shipment, "delivered", behaviour)

    def _record(
        self, shipment: Shipment, event: str, attempt: int, status: int | None, error: str | None
    ) -> None:
        logger.info(
            "callback %s %s attempt %d -> %s",
            event,
            shipment.shipment_reference,
            attempt,
            status if status is not None else error,
        )
        with self._lock:
            if shipment.cancelled.is_set():
                return
            self._attempts.append(
                {
                    "at": now_iso(),
                    "event": event,
                    "event_id": shipment.event_ids[event],
                    "shipment_reference": shipment.shipment_reference,
                    "url": shipment.callback_url,
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                }
            )


def post(
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
