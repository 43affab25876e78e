"""Fulfilment requests and withdrawals over HTTP: signed JSON POSTs to a warehouse.

Wire contract (``fakes.warehouse`` implements the warehouse side). Every call is a
``POST`` with ``Content-Type: application/json``, ``Idempotency-Key`` and
``X-OMS-Signature`` (``core.signing`` over the exact body bytes); bodies are compact
JSON with sorted keys, so a retry of the same call sends the same bytes. A repeated
``Idempotency-Key`` gets the first answer again; it is not a new call.

* ``send``: ``POST <warehouse url>`` (the warehouse's fulfilment URL), body
  ``FulfilmentRequest.to_payload()``.
  200/201/202 ``{"status": "accepted", "shipment_reference": "..."}`` -> ``Accepted``;
  409/422 ``{"status": "rejected", "code": "...", "reason": "..."}`` -> ``Rejected``.
* ``withdraw``: ``POST <warehouse url without trailing slash>/<request_id>/withdraw``
  (``request_id`` percent-encoded), body ``{"request_id", "order_number", "reason"}``.
  200/201/202 ``{"status": "withdrawn", "request_id": ...}`` -> ``Withdrawn``;
  409/422 ``{"status": "refused", "code": "already_shipped", "reason": "..."}`` ->
  ``WithdrawRefused``.

Failures map onto the typed errors of ``fulfilment.gateways.base``:

* cannot connect (refused, unresolvable, connect timeout), 429, 5xx ->
  ``WarehouseUnavailable``.
* read timeout, connection dropped after sending, unreadable or oversized 2xx, 409
  without a rejection (or refusal) body, any other 2xx -> ``WarehouseOutcomeUnknown``.
* any other 4xx (401: the signature did not verify), 3xx -> ``WarehouseRequestRejected``.

No retries here and no redirects followed: the caller (a task with backoff) retries with
the same idempotency key. Each call opens its own connection and closes it, so one
gateway may be shared between threads. ``timeout_read`` bounds each socket read, not the
whole exchange; answers are at most 64 KiB.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from core.log_context import request_id_header
from core.net import request_never_sent
from core.signing import SIGNATURE_HEADER, sign
from fulfilment.gateways.base import (
    Accepted,
    FulfilmentRequest,
    FulfilmentResult,
    Rejected,
    WarehouseError,
    WarehouseOutcomeUnknown,
    WarehouseRequestRejected,
    WarehouseUnavailable,
    Withdrawn,
    WithdrawRefused,
    WithdrawResult,
)

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
MAX_RESPONSE_BYTES = 64 * 1024
_ACCEPTED_STATUSES = frozenset({200, 201, 202})
_REJECTED_STATUSES = frozenset({409, 422})
_CONFIGURATION_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


class HttpWarehouseGateway:
    """Send fulfilment requests and withdrawals to warehouses over HTTP; bounded
    timeouts, no retries."""

    def __init__(
        self,
        timeout_connect: float = 3.0,
        timeout_read: float = 10.0,
        *,
        clock: Callable[[], float] = time.time,
        user_agent: str = "oms-fulfilment/1",
    ) -> None:
        """Give up connecting after ``timeout_connect`` seconds, and waiting for any
        read after ``timeout_read`` seconds. ``clock`` supplies the signing time."""
        if timeout_connect <= 0 or timeout_read <= 0:
            raise ValueError("timeouts must be positive")
        self._timeout = (timeout_connect, timeout_read)
        self._clock = clock
        self._user_agent = user_agent

    def send(
        self, url: str, secret: str, request: FulfilmentRequest, idempotency_key: str
    ) -> FulfilmentResult:
        """Ask the warehouse at ``url`` to fulfil ``request``; return its answer.

        Raise ``WarehouseUnavailable``, ``WarehouseOutcomeUnknown`` or
        ``WarehouseRequestRejected`` (see the module docstring), ``ValueError`` for a
        bad URL, secret, key or request (nothing is sent then).
        """
        _check_url(url)
        _check_key(idempotency_key)
        _check_request(request)
        status, content, location = self._post(
            url, secret, encode_request(request), idempotency_key
        )
        return _interpret(url, status, content, location)

    def withdraw(
        self,
        url: str,
        secret: str,
        request_id: str,
        order_number: str,
        reason: str,
        idempotency_key: str,
    ) -> WithdrawResult:
        """Ask the warehouse whose fulfilment URL is ``url`` not to ship ``request_id``.

        Raise as ``send`` does; ``ValueError`` for a bad URL, secret, key or id.
        """
        _check_url(url)
        _check_key(idempotency_key)
        if not request_id or not order_number:
            raise ValueError("a withdrawal needs a request_id and an order_number")
        target = withdraw_url(url, request_id)
        body = encode_withdrawal(request_id, order_number, reason)
        status, content, location = self._post(target, secret, body, idempotency_key)
        return _interpret_withdrawal(target, request_id, status, content, location)

    def _post(
        self, url: str, secret: str, body: bytes, idempotency_key: str
    ) -> tuple[int, bytes | None, str]:
        """POST ``body`` signed; return the status, the bounded body and ``Location``.

        Raise ``WarehouseUnavailable`` when nothing was sent, ``WarehouseOutcomeUnknown``
        when no complete answer came back, ``ValueError`` for a URL requests refuses.
        """
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": self._user_agent,
            IDEMPOTENCY_KEY_HEADER: idempotency_key,
            SIGNATURE_HEADER: sign(body, secret, int(self._clock())),
            **request_id_header(),
        }
        status: int | None = None
        try:
            with (
                requests.Session() as session,
                session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                    stream=True,
                ) as response,
            ):
                status = response.status_code
                content = _read_bounded(response)
                location = response.headers.get("Location", "")
        except _CONFIGURATION_ERRORS as exc:
            raise ValueError(f"cannot send to {url!r}: {exc}") from exc
        except requests.exceptions.RequestException as exc:
            if status is None and request_never_sent(exc):
                raise WarehouseUnavailable(f"could not connect to {url}: {exc}") from exc
            raise WarehouseOutcomeUnknown(
                f"no complete answer from {url} after sending: {exc}", status=status
            ) from exc
        return status, content, location


def encode_request(request: FulfilmentRequest) -> bytes:
    """Return the exact body bytes for ``request``: the same request, the same bytes."""
    return json.dumps(request.to_payload(), separators=(",", ":"), sort_keys=True).encode()


def encode_withdrawal(request_id: str, order_number: str, reason: str) -> bytes:
    """Return the exact body bytes of a withdrawal: the same withdrawal, the same bytes."""
    payload = {"request_id": request_id, "order_number": order_number, "reason": reason}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def withdraw_url(url: str, request_id: str) -> str:
    """Where to withdraw ``request_id`` from the warehouse whose fulfilment URL is ``url``."""
    return f"{url.rstrip('/')}/{quote(request_id, safe='')}/withdraw"


def _interpret(url: str, status: int, content: bytes | None, location: str) -> FulfilmentResult:
    answer = _json_object(content)
    reference = answer.get("shipment_reference")
    if (
        status in _ACCEPTED_STATUSES
        and answer.get("status") == "accepted"
        and isinstance(reference, str)
        and reference
    ):
        return Accepted(shipment_reference=reference)
    if status in _REJECTED_STATUSES and answer.get("status") == "rejected":
        return Rejected(
            reason=str(answer.get("reason") or ""), code=str(answer.get("code") or "rejected")
        )
    raise _failure(url, status, answer, location)


def _interpret_withdrawal(
    url: str, request_id: str, status: int, content: bytes | None, location: str
) -> WithdrawResult:
    answer = _json_object(content)
    if (
        status in _ACCEPTED_STATUSES
        and answer.get("status") == "withdrawn"
        and answer.get("request_id", request_id) == request_id
    ):
        return Withdrawn(request_id=request_id)
    if status in _REJECTED_STATUSES and answer.get("status") == "refused":
        return WithdrawRefused(
            code=str(answer.get("code") or "refused"), reason=str(answer.get("reason") or "")
        )
    raise _failure(url, status, answer, location)


def _failure(url: str, status: int, answer: dict[str, Any], location: str) -> WarehouseError:
    """The error for an answer that is neither a result nor a refusal of the call."""
    if status in _ACCEPTED_STATUSES:
        return WarehouseOutcomeUnknown(f"unreadable {status} answer from {url}", status=status)
    if status == 409:
        return WarehouseOutcomeUnknown(
            f"409 without a rejection or refusal from {url}: {_describe(answer)}", status=status
        )
    if status == 429 or status >= 500:
        return WarehouseUnavailable(f"{status} from {url}: {_describe(answer)}", status=status)
    if 300 <= status < 400:
        return WarehouseRequestRejected(
            f"{status} redirect from {url} to {location!r}; configure the final URL",
            status=status,
        )
    if 400 <= status < 500:
        error_code = answer.get("code")
        return WarehouseRequestRejected(
            f"{status} from {url}: {_describe(answer)}",
            status=status,
            error_code=error_code if isinstance(error_code, str) else None,
        )
    return WarehouseOutcomeUnknown(f"unexpected {status} answer from {url}", status=status)


def _read_bounded(response: requests.Response) -> bytes | None:
    """Return the body, or None when it is longer than ``MAX_RESPONSE_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=8192):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(content: bytes | None) -> dict[str, Any]:
    if not content:
        return {}
    try:
        value = json.loads(content)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _describe(answer: dict[str, Any]) -> str:
    detail = answer.get("detail") or answer.get("reason") or answer.get("code")
    return str(detail)[:200] if detail else "no detail"


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a warehouse URL must be http(s)://host/..., got {url!r}")


def _check_key(idempotency_key: str) -> None:
    if not (
        0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX_LENGTH
        and idempotency_key.isascii()
        and idempotency_key.isprintable()
    ):
        raise ValueError(
            f"an idempotency key is 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters"
        )


def _check_request(request: FulfilmentRequest) -> None:
    if not request.lines:
        raise ValueError("a fulfilment request needs at least one line")
    for line in request.lines:
        if isinstance(line.quantity, bool) or not isinstance(line.quantity, int):
            raise ValueError(f"quantity of {line.sku!r} must be an int")
        if line.quantity <= 0:
            raise ValueError(f"quantity of {line.sku!r} must be positive")
    _check_url(request.callback_url)
