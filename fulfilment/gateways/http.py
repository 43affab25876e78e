"""Fulfilment requests over HTTP: one signed JSON POST per warehouse share of an order.

Wire contract (``fakes.warehouse`` implements the warehouse side):

* ``POST <warehouse url>`` with ``Content-Type: application/json``, ``Idempotency-Key``
  and ``X-OMS-Signature`` (``core.signing`` over the exact body bytes). The body
  is ``FulfilmentRequest.to_payload()``, compact with sorted keys, so a retry of the
  same request sends the same bytes.
* 200/201/202 ``{"status": "accepted", "shipment_reference": "..."}`` -> ``Accepted``.
* 409/422 ``{"status": "rejected", "code": "...", "reason": "..."}`` -> ``Rejected``.
* A repeated ``Idempotency-Key`` gets the first answer again; it is not a new fulfilment.

Failures map onto the typed errors of ``fulfilment.gateways.base``:

* cannot connect (refused, unresolvable, connect timeout), 429, 5xx ->
  ``WarehouseUnavailable``.
* read timeout, connection dropped after sending, unreadable or oversized 2xx, 409
  without a rejection body, any other 2xx -> ``WarehouseOutcomeUnknown``.
* any other 4xx (401: the signature did not verify), 3xx -> ``WarehouseRequestRejected``.

No retries here and no redirects followed: the caller (a task with backoff) retries with
the same idempotency key. Each ``send`` opens its own connection and closes it, so one
gateway may be shared between threads. ``timeout_read`` bounds each socket read, not the
whole exchange; answers are at most 64 KiB.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from core.net import request_never_sent
from core.signing import SIGNATURE_HEADER, sign
from fulfilment.gateways.base import (
    Accepted,
    FulfilmentRequest,
    FulfilmentResult,
    Rejected,
    WarehouseOutcomeUnknown,
    WarehouseRequestRejected,
    WarehouseUnavailable,
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
    """Send fulfilment requests to warehouses over HTTP; bounded timeouts, no retries."""

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
        body = encode_request(request)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": self._user_agent,
            IDEMPOTENCY_KEY_HEADER: idempotency_key,
            SIGNATURE_HEADER: sign(body, secret, int(self._clock())),
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
        return _interpret(url, status, content, location)


def encode_request(request: FulfilmentRequest) -> bytes:
    """Return the exact body bytes for ``request``: the same request, the same bytes."""
    return json.dumps(request.to_payload(), separators=(",", ":"), sort_keys=True).encode()


def _interpret(url: str, status: int, content: bytes | None, location: str) -> FulfilmentResult:
    answer = _json_object(content)
    if status in _ACCEPTED_STATUSES:
        reference = answer.get("shipment_reference")
        if answer.get("status") == "accepted" and isinstance(reference, str) and reference:
            return Accepted(shipment_reference=reference)
        raise WarehouseOutcomeUnknown(f"unreadable {status} answer from {url}", status=status)
    if status in _REJECTED_STATUSES and answer.get("status") == "rejected":
        return Rejected(
            reason=str(answer.get("reason") or ""), code=str(answer.get("code") or "rejected")
        )
    if status == 409:
        raise WarehouseOutcomeUnknown(
            f"409 without a rejection from {url}: {_describe(answer)}", status=status
        )
    if status == 429 or status >= 500:
        raise WarehouseUnavailable(f"{status} from {url}: {_describe(answer)}", status=status)
    if 300 <= status < 400:
        raise WarehouseRequestRejected(
            f"{status} redirect from {url} to {location!r}; configure the final URL",
            status=status,
        )
    if 400 <= status < 500:
        error_code = answer.get("code")
        raise WarehouseRequestRejected(
            f"{status} from {url}: {_describe(answer)}",
            status=status,
            error_code=error_code if isinstance(error_code, str) else None,
        )
    raise WarehouseOutcomeUnknown(f"unexpected {status} answer from {url}", status=status)


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
