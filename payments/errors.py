from typing import Any

from core.errors import ConcurrentUpdate, DomainError


class PaymentDeclined(DomainError):
    code = "payment_declined"
    status = 402
    title = "The payment was declined"

    def __init__(self, *, decline_code: str, message: str, **extra: Any) -> None:
        super().__init__(message or "The card was declined.", decline_code=decline_code, **extra)


class PaymentProviderUnavailable(DomainError):
    code = "payment_provider_unavailable"
    status = 503
    title = "The payment provider is unavailable; retry later"

    def __init__(self, detail: str | None = None, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class PaymentRejected(DomainError):
    code = "payment_rejected"
    status = 422
    title = "The payment provider rejected the request"


class RefundExceedsCaptured(DomainError):
    code = "refund_exceeds_captured"
    status = 409
    title = "The refund would exceed the captured amount"


class OperationInProgress(ConcurrentUpdate):
    # A ConcurrentUpdate: transient, so an idempotency key does not keep it as its outcome.
    code = "payment_operation_in_progress"
    status = 409
    title = "Another payment operation for this order is in progress; retry"


class WebhookSignatureInvalid(DomainError):
    code = "webhook_signature_invalid"
    status = 400
    title = "Webhook signature missing, invalid or too old"


class ProviderCircuitOpen(Exception):
    """The breaker is open: the call was not made."""


class VoidPending(Exception):
    """The provider did not confirm the void yet: retry later."""
