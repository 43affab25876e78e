"""What crosses the wire: paths, headers, answers, fulfilment and withdraw bodies."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

REQUEST_PATH = "/fulfilment-requests"
WITHDRAW_SUFFIX = "/withdraw"
CONTROL_PREFIX = "/_control/"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
WAREHOUSE_CODE_HEADER = "X-Warehouse-Code"
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """One JSON answer: its status and body."""

    status: int
    payload: dict[str, Any]


def rejected(request_id: str, code: str, reason: str) -> Answer:
    return Answer(
        409, {"status": "rejected", "code": code, "reason": reason, "request_id": request_id}
    )


def withdrawn(request_id: str) -> Answer:
    return Answer(200, {"status": "withdrawn", "request_id": request_id})


def refused(request_id: str, code: str, reason: str) -> Answer:
    return Answer(
        409, {"status": "refused", "code": code, "reason": reason, "request_id": request_id}
    )


def error(status: int, code: str, detail: str, **extra: Any) -> Answer:
    return Answer(status, {"status": "error", "code": code, "detail": detail, **extra})


def parse_fulfilment_request(body: bytes) -> dict[str, Any]:
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


def withdraw_target(path: str) -> str | None:
    """The request id in ``/fulfilment-requests/<request_id>/withdraw``, else None."""
    prefix = f"{REQUEST_PATH}/"
    if not (path.startswith(prefix) and path.endswith(WITHDRAW_SUFFIX)):
        return None
    quoted = path[len(prefix) : -len(WITHDRAW_SUFFIX)]
    if not quoted or "/" in quoted:
        return None
    return unquote(quoted)


def parse_withdraw_request(body: bytes, request_id: str) -> dict[str, Any]:
    """Check a withdraw body for ``request_id``; ValueError says what is wrong."""
    try:
        request = json.loads(body)
    except ValueError as exc:
        raise ValueError("the body is not JSON") from exc
    if not isinstance(request, dict):
        raise ValueError("the body is not a JSON object")
    for name in ("request_id", "order_number"):
        if not isinstance(request.get(name), str) or not request[name]:
            raise ValueError(f"{name} must be a non-empty string")
    if not isinstance(request.get("reason"), str):
        raise ValueError("reason must be a string")
    if request["request_id"] != request_id:
        raise ValueError(f"the body's request_id is not {request_id!r}, as in the path")
    return request


def readable(body: bytes) -> Any:
    """The body as JSON when it is JSON, else as text (for the control API's records)."""
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Reply:
    """How to answer one request: ``answer``, unless ``hang_seconds`` says to withhold it."""

    answer: Answer
    record: dict[str, Any]
    replayed: bool = False
    hang_seconds: float | None = None


class WarehouseService(Protocol):
    """What the HTTP server and the control API need of the fake (FakeWarehouse): they
    depend on this, not on the fake's module, so neither imports the other."""

    def handling(self) -> AbstractContextManager[None]: ...
    def handle_fulfilment(self, body: bytes, key: str | None, signature: str | None) -> Reply: ...
    def handle_withdraw(
        self, request_id: str, body: bytes, key: str | None, signature: str | None
    ) -> Reply: ...
    def withhold(self, reply: Reply) -> None: ...
    def behaviour(self) -> dict[str, Any]: ...
    def configure(self, **changes: Any) -> dict[str, Any]: ...
    def requests(self) -> list[dict[str, Any]]: ...
    def shipments(self) -> list[dict[str, Any]]: ...
    def callbacks(self) -> list[dict[str, Any]]: ...
    def withdrawals(self) -> list[dict[str, Any]]: ...
    def reset(self) -> None: ...
    def send_event(self, shipment_reference: str, event: str) -> dict[str, Any]: ...
    def send_return_received(
        self, shipment_reference: str, return_id: str, lines: list[dict[str, Any]]
    ) -> dict[str, Any]: ...
