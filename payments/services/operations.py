"""Payment rows and the provider calls recorded against them.

Every function here runs inside the caller's transaction with the rows locked (see
flows.lock_objects) and knows nothing of orders: it reports what changed, and the
order use case decides what that means for the order.
"""

from typing import Any

from django.db.models import Sum

from payments.errors import PaymentProviderUnavailable, PaymentRejected
from payments.models import Payment, PaymentOperation
from payments.provider import retry_after_seconds
from payments.services.outcomes import Outcome, OutcomeKind

LIVE_PAYMENT_STATUSES = [
    Payment.Status.PENDING,
    Payment.Status.REQUIRES_ACTION,
    Payment.Status.AUTHORIZED,
    Payment.Status.CAPTURED,
    Payment.Status.REFUNDED,
]
# Payments that hold money the order may no longer want.
VOIDABLE_STATUSES = (Payment.Status.AUTHORIZED, Payment.Status.REQUIRES_ACTION)
OPEN_OPERATION_STATUSES = [PaymentOperation.Status.PENDING, PaymentOperation.Status.UNKNOWN]


def operation_open_locked(payment: Payment, kind: str) -> PaymentOperation | None:
    """The payment's latest operation of `kind` still waiting for an outcome, locked."""
    return (
        PaymentOperation.objects.select_for_update()
        .filter(payment=payment, kind=kind, status__in=OPEN_OPERATION_STATUSES)
        .order_by("-pk")
        .first()
    )


def operation_create(
    payment: Payment, kind: str, amount: int, *, reference: str = "", final: bool = False
) -> PaymentOperation:
    """Record a call before it is made; its id gives the provider idempotency key."""
    return PaymentOperation.objects.create(
        payment=payment, kind=kind, amount=amount, reference=reference, final=final
    )


def operation_resend(operation: PaymentOperation) -> None:
    """An operation whose outcome is unknown goes out again, same key: mark it in flight."""
    operation.status = PaymentOperation.Status.PENDING
    operation.save(update_fields=["status", "updated_at"])


def operation_settle(
    operation: PaymentOperation | None,
    status: str,
    *,
    provider_object_id: str = "",
    error_code: str = "",
    message: str = "",
) -> None:
    """Record a definite outcome on an operation still open; a settled one stays as is."""
    if operation is None or operation.status not in OPEN_OPERATION_STATUSES:
        return
    operation.status = status
    if provider_object_id:
        operation.provider_object_id = provider_object_id[:255]
    operation.error_code = error_code[:64]
    operation.error_message = message[:500]
    operation.save(
        update_fields=["status", "provider_object_id", "error_code", "error_message", "updated_at"]
    )


def operation_mark_unknown(operation: PaymentOperation, outcome: Outcome[Any]) -> None:
    """The call may have reached the provider: send it again only with the same key."""
    if operation.status != PaymentOperation.Status.PENDING:
        return
    operation.status = PaymentOperation.Status.UNKNOWN
    operation.error_code = outcome.error_code[:64]
    operation.error_message = outcome.message[:500]
    operation.save(update_fields=["status", "error_code", "error_message", "updated_at"])


def operation_failure_record(
    operation: PaymentOperation, outcome: Outcome[Any], *, action: str
) -> PaymentRejected | PaymentProviderUnavailable:
    """Record a capture's, refund's or void's failed call on its locked operation; return
    the error for the client. A definite refusal fails the operation; anything that may
    have reached the provider leaves it unknown, to be sent again with the same key."""
    if outcome.kind in (OutcomeKind.DECLINED, OutcomeKind.REJECTED):
        operation_settle(
            operation,
            PaymentOperation.Status.FAILED,
            error_code=outcome.error_code,
            message=outcome.message,
        )
        return PaymentRejected(f"The {action} was refused: {outcome.message or outcome.error_code}")
    if outcome.kind is OutcomeKind.NOT_SENT and operation.attempts <= 1:
        operation_settle(
            operation,
            PaymentOperation.Status.FAILED,
            error_code=outcome.error_code,
            message=outcome.message,
        )
    else:
        operation_mark_unknown(operation, outcome)
    return PaymentProviderUnavailable(retry_after=retry_after_seconds())


def payment_create(
    *, order_id: Any, payment_method: str, amount: int, currency: str, order_edit_id: Any = None
) -> tuple[Payment, PaymentOperation]:
    """A new authorization attempt and its authorize operation. An order edit's
    re-authorization (`order_edit_id`) is not the order's payment until payment_replace."""
    payment = Payment.objects.create(
        order_id=order_id,
        payment_method=payment_method,
        amount=amount,
        currency=currency,
        order_edit_id=order_edit_id,
        is_current=order_edit_id is None,
    )
    return payment, operation_create(payment, PaymentOperation.Kind.AUTHORIZE, amount)


def payment_replace(*, old: Payment | None, new: Payment) -> None:
    """Make `new` the order's payment in place of `old` (both locked); `old` is left for
    the caller to void."""
    if old is not None:
        old.is_current = False
        old.save(update_fields=["is_current", "updated_at"])
    new.is_current = True
    new.save(update_fields=["is_current", "updated_at"])


def payment_fail(payment: Payment, *, decline_code: str) -> bool:
    """The payment definitely did not authorize. Return whether it changed."""
    if payment.status not in (Payment.Status.PENDING, Payment.Status.REQUIRES_ACTION):
        return False
    payment.fail()
    payment.decline_code = decline_code[:64]
    payment.save(update_fields=["status", "decline_code", "updated_at"])
    return True


def payment_capture_record(
    payment: Payment, operation: PaymentOperation | None, *, amount_received: int
) -> bool:
    """Record a capture (from any path); a capture recorded before stays as it is.
    Return whether the payment is now captured for good (its final capture recorded).

    A capture that is not final adds its amount to `amount_captured` once (when its
    operation settles) and the payment stays authorized for the next one. A final
    capture (or one made at the provider outside oms: no operation) marks the payment
    captured; `amount_captured` becomes what the provider received, never less than what
    was recorded plus this capture, never more than that nor than was authorized.
    """
    was_open = operation is not None and operation.status in OPEN_OPERATION_STATUSES
    operation_settle(operation, PaymentOperation.Status.SUCCEEDED)
    if payment.status != Payment.Status.AUTHORIZED:
        return False
    if operation is not None and not operation.final:
        if was_open:
            captured = payment.amount_captured + operation.amount
            payment.amount_captured = min(payment.amount, captured)
            payment.save(update_fields=["amount_captured", "updated_at"])
        return False
    if operation is None:
        ceiling = payment.amount
    else:
        ceiling = payment.amount_captured + (operation.amount if was_open else 0)
        ceiling = min(ceiling, payment.amount)
    payment.capture()
    payment.amount_captured = max(payment.amount_captured, min(amount_received or ceiling, ceiling))
    payment.save(update_fields=["status", "amount_captured", "updated_at"])
    return True


def payment_refund_record(payment: Payment, *, amount_refunded_total: int) -> bool:
    """Raise the refunded amount to the provider's total. Return whether all that was
    captured is now refunded."""
    total = min(amount_refunded_total, payment.amount_captured)
    if total > payment.amount_refunded:
        payment.amount_refunded = total
        fields = ["amount_refunded", "updated_at"]
        if total == payment.amount_captured and payment.status == Payment.Status.CAPTURED:
            payment.refund_fully()
            fields.append("status")
        payment.save(update_fields=fields)
    return payment.amount_captured > 0 and payment.amount_refunded >= payment.amount_captured


def payment_event_data(payment: Payment) -> dict[str, object]:
    """The payment's state as the order event log carries it (payment.* events)."""
    return {
        "payment_id": payment.pk,
        "status": payment.status,
        "amount": payment.amount,
        "amount_captured": payment.amount_captured,
        "amount_refunded": payment.amount_refunded,
        "currency": payment.currency,
    }


def refunds_succeeded_total(payment: Payment) -> int:
    total: int | None = PaymentOperation.objects.filter(
        payment=payment,
        kind=PaymentOperation.Kind.REFUND,
        status=PaymentOperation.Status.SUCCEEDED,
    ).aggregate(total=Sum("amount"))["total"]
    return total or 0


def refunds_in_flight_total(payment: Payment) -> int:
    total: int | None = PaymentOperation.objects.filter(
        payment=payment, kind=PaymentOperation.Kind.REFUND, status__in=OPEN_OPERATION_STATUSES
    ).aggregate(total=Sum("amount"))["total"]
    return total or 0
