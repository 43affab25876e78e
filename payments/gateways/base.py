"""What every payment gateway speaks: plain data in and out, and typed failures.

Gateways know nothing of Django models. Amounts are integer minor units, currencies
lowercase ISO 4217 codes, idempotency keys strings derived from a stored row id.

Failures, and what the caller may do next:

* ``PaymentDeclined``: the provider processed the attempt and refused it. Final for this
  payment method.
* ``ProviderUnavailable``: the provider could not be reached or answered 429/5xx; the
  request was not carried out. Retry later with the same idempotency key.
* ``OutcomeUnknown``: the request may have reached the provider and been carried out
  (timeout, connection dropped after sending, concurrent request with the same key).
  Retry only with the SAME idempotency key, which returns the first attempt's result,
  or reconcile (``retrieve`` / ``find_by_order``) before deciding anything.
* ``ProviderRequestRejected``: the provider refused the request as invalid (4xx other
  than a decline): a bug or a state mismatch, not worth retrying unchanged.
* ``WebhookSignatureInvalid``: an incoming webhook is unsigned, forged, stale or garbled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class IntentResult:
    """A payment intent as the provider last reported it."""

    id: str
    status: str
    amount: int
    amount_capturable: int
    amount_received: int
    currency: str
    client_secret: str | None = None
    decline_code: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    id: str
    amount: int
    status: str
    currency: str = ""
    intent_id: str | None = None


class GatewayError(Exception):
    """A payment provider call failed; ``code`` is stable and machine-readable."""

    code = "gateway_error"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class PaymentDeclined(GatewayError):
    code = "payment_declined"

    def __init__(self, decline_code: str, message: str, intent_id: str | None) -> None:
        self.decline_code = decline_code
        self.intent_id = intent_id
        super().__init__(message)


class ProviderUnavailable(GatewayError):
    code = "provider_unavailable"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class OutcomeUnknown(GatewayError):
    code = "provider_outcome_unknown"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ProviderRequestRejected(GatewayError):
    code = "provider_request_rejected"

    def __init__(self, message: str, *, status: int, provider_code: str | None) -> None:
        self.status = status
        self.provider_code = provider_code
        super().__init__(message)


WebhookRejection = Literal["unsigned", "malformed", "forged", "stale"]


class WebhookSignatureInvalid(GatewayError):
    code = "webhook_signature_invalid"

    def __init__(self, reason: WebhookRejection, message: str) -> None:
        self.reason: WebhookRejection = reason
        super().__init__(message)


class PaymentGateway(Protocol):
    """The calls checkout, fulfilment and cancellation make on a card provider."""

    def authorize(
        self,
        *,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> IntentResult: ...

    def retrieve(self, *, intent_id: str) -> IntentResult: ...

    def find_by_order(self, *, order_id: str | int) -> list[IntentResult]: ...

    def capture(
        self,
        *,
        intent_id: str,
        amount: int | None = None,
        idempotency_key: str,
        final: bool = True,
    ) -> IntentResult: ...

    def cancel(self, *, intent_id: str, idempotency_key: str) -> IntentResult: ...

    def refund(
        self, *, intent_id: str, amount: int | None = None, idempotency_key: str
    ) -> RefundResult: ...
