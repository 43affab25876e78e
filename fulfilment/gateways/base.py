"""What every warehouse gateway speaks: plain data in and out, and typed failures.

Gateways know nothing of Django models. A ``FulfilmentRequest`` asks one warehouse to
ship its part of one order; ``request_id`` and the idempotency key are derived from a
stored row id, so every retry of the same request carries the same key.

Answers (returned):

* ``Accepted``: the warehouse took the request and will ship it; ``shipment_reference``
  names the shipment in its later ``shipped`` / ``delivered`` callbacks.
* ``Rejected``: the warehouse processed the request and cannot fill it (``code`` such as
  ``out_of_stock``, or ``withdrawn`` for a request oms withdrew). Final for this request:
  route the lines elsewhere or give up.

A withdrawal asks a warehouse not to ship a request after all (the customer cancelled
the order); it names the request by ``request_id``, also one the warehouse never got:

* ``Withdrawn``: the warehouse will not ship it and sends no more callbacks for it; a
  delayed fulfilment request with that ``request_id`` will be rejected (``withdrawn``).
  Withdrawing again answers ``Withdrawn`` again.
* ``WithdrawRefused``: too late (``code`` such as ``already_shipped``): the parcel has
  left and its callbacks will report it.

Failures (raised) of either call, and what the caller may do next:

* ``WarehouseUnavailable``: the warehouse could not be reached or answered 429/5xx; the
  request was not carried out. Retry later with the same idempotency key.
* ``WarehouseOutcomeUnknown``: the request may have reached the warehouse and been carried
  out (read timeout, connection dropped after sending, unreadable 2xx, 409 without a
  rejection or refusal: the same key still in flight). Retry only with the SAME
  idempotency key, which returns the first attempt's answer.
* ``WarehouseRequestRejected``: the warehouse refused the request as invalid (any other
  4xx, a redirect): a bug or a misconfiguration (401: wrong secret), not worth retrying
  unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class FulfilmentLine:
    sku: str
    name: str
    quantity: int


@dataclass(frozen=True)
class FulfilmentRequest:
    """One warehouse's share of one order, as sent to that warehouse."""

    request_id: str
    order_number: str
    warehouse_code: str
    lines: list[FulfilmentLine]
    shipping_address: dict[str, str]
    callback_url: str

    def to_payload(self) -> dict[str, Any]:
        """Return the JSON object sent on the wire."""
        return {
            "request_id": self.request_id,
            "order_number": self.order_number,
            "warehouse_code": self.warehouse_code,
            "lines": [
                {"sku": line.sku, "name": line.name, "quantity": line.quantity}
                for line in self.lines
            ],
            "shipping_address": dict(self.shipping_address),
            "callback_url": self.callback_url,
        }


@dataclass(frozen=True)
class Accepted:
    shipment_reference: str


@dataclass(frozen=True)
class Rejected:
    reason: str
    code: str


FulfilmentResult = Accepted | Rejected


@dataclass(frozen=True)
class Withdrawn:
    request_id: str


@dataclass(frozen=True)
class WithdrawRefused:
    code: str
    reason: str


WithdrawResult = Withdrawn | WithdrawRefused


class WarehouseError(Exception):
    """A warehouse call failed; ``code`` is stable and machine-readable."""

    code = "warehouse_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


class WarehouseUnavailable(WarehouseError):
    code = "warehouse_unavailable"


class WarehouseOutcomeUnknown(WarehouseError):
    code = "warehouse_outcome_unknown"


class WarehouseRequestRejected(WarehouseError):
    code = "warehouse_request_rejected"

    def __init__(self, message: str, *, status: int, error_code: str | None = None) -> None:
        self.error_code = error_code
        super().__init__(message, status=status)


class WarehouseGateway(Protocol):
    """The calls oms makes on a warehouse's fulfilment service (``url``: where fulfilment
    requests go)."""

    def send(
        self, url: str, secret: str, request: FulfilmentRequest, idempotency_key: str
    ) -> FulfilmentResult: ...

    def withdraw(
        self,
        url: str,
        secret: str,
        request_id: str,
        order_number: str,
        reason: str,
        idempotency_key: str,
    ) -> WithdrawResult: ...
