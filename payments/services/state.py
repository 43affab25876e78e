"""Bring our payment rows and the order in line with what the provider reports.

Used by the API path, the webhook path and the reconciler alike. Every function here
runs inside the caller's transaction with the order row locked, and is a no-op when
the change was already recorded, so racing paths move money once and leave one
history row per transition.
"""

from typing import Any

from core.actors import Actor
from core.errors import DomainError
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus
from payments.errors import PaymentProviderUnavailable, PaymentRejected
from payments.gateways.base import IntentResult
from payments.models import Payment, PaymentOperation
from payments.provider import retry_after_seconds
from payments.services.outcomes import Outcome, OutcomeKind

LIVE_PAYMENT_STATUSES = [
    Payment.Status.PENDING,
    Payment.Status.REQUIRES_ACTION,
    Payment.Status.AUTHORIZED,
    Payment.Status.CAPTURED,
]
OPEN_OPERATION_STATUSES = [PaymentOperation.Status.PENDING, PaymentOperation.Status.UNKNOWN]


def operation_open_locked(payment: Payment, kind: str) -> PaymentOperation | None:
    return (
        PaymentOperation.objects.select_for_update()
        .filter(payment=payment, kind=kind, status__in=OPEN_OPERATION_STATUSES)
        .order_by("-pk")
        .first()
    )


def operation_settle(
    operation: PaymentOperation | None,
    status: str,
    *,
    provider_object_id: str = "",
    error_code: str = "",
    message: str = "",
) -> None:
    if operation is None or operation.status not in OPEN_OPERATION_STATUSES:
        return
    operation.status = status
    if provider_object_id:
        operation.provider_object_id = provider_object_id
    operation.error_code = error_code[:64]
    operation.error_message = message[:500]
    operation.save(
        update_fields=["status", "provider_object_id", "error_code", "error_message", "updated_at"]
    )


def payment_fail_locked(
    *, order: Order, payment: Payment, decline_code: str, actor: Actor, reason: str
) -> None:
    """The payment definitely did not authorize: fail it, and the order's attempt."""
    if payment.status in (Payment.Status.PENDING, Payment.Status.REQUIRES_ACTION):
        payment.status = Payment.Status.FAILED
        payment.decline_code = decline_code[:64]
        payment.save(update_fields=["status", "decline_code", "updated_at"])
    if order.status == OrderStatus.PENDING_PAYMENT:
        order_transition_locked(order=order, transition="fail_payment", actor=actor, reason=reason)


def intent_apply_locked(
    *, order: Order, payment: Payment, intent: IntentResult, actor: Actor
) -> bool:
    """Apply a PaymentIntent's state. Return True when the authorization must be voided
    (it exists but its order no longer wants it)."""
    authorize = operation_open_locked(payment, PaymentOperation.Kind.AUTHORIZE)
    if not payment.provider_payment_id:
        payment.provider_payment_id = intent.id
        payment.save(update_fields=["provider_payment_id", "updated_at"])
    status = intent.status
    if status == "requires_capture":
        operation_settle(authorize, PaymentOperation.Status.SUCCEEDED, provider_object_id=intent.id)
        if (
            payment.status == Payment.Status.FAILED
            and Payment.objects.filter(order=order, status__in=LIVE_PAYMENT_STATUSES)
            .exclude(pk=payment.pk)
            .exists()
        ):
            # Authorized late, after another attempt took over: release it.
            return True
        if payment.status in (
            Payment.Status.PENDING,
            Payment.Status.REQUIRES_ACTION,
            Payment.Status.FAILED,
        ):
            payment.status = Payment.Status.AUTHORIZED
            payment.client_secret = ""
            payment.save(update_fields=["status", "client_secret", "updated_at"])
        if payment.status != Payment.Status.AUTHORIZED:
            return False
        if order.status == OrderStatus.PENDING_PAYMENT:
            order_transition_locked(
                order=order, transition="confirm", actor=actor, reason="payment authorized"
            )
            return False
        return order.status not in (
            OrderStatus.CONFIRMED,
            OrderStatus.ROUTED,
            OrderStatus.SHIPPED,
            OrderStatus.DELIVERED,
            OrderStatus.REFUNDED,
        )
    if status in ("requires_action", "requires_source_action", "requires_confirmation"):
        operation_settle(authorize, PaymentOperation.Status.SUCCEEDED, provider_object_id=intent.id)
        if payment.status == Payment.Status.PENDING:
            payment.status = Payment.Status.REQUIRES_ACTION
            payment.client_secret = intent.client_secret or ""
            payment.save(update_fields=["status", "client_secret", "updated_at"])
        return False
    if status == "requires_payment_method":
        operation_settle(
            authorize,
            PaymentOperation.Status.FAILED,
            provider_object_id=intent.id,
            error_code=intent.decline_code or "payment_failed",
        )
        payment_fail_locked(
            order=order,
            payment=payment,
            decline_code=intent.decline_code or "payment_failed",
            actor=actor,
            reason=f"payment failed: {intent.decline_code or 'requires_payment_method'}",
        )
        return False
    if status == "canceled":
        operation_settle(authorize, PaymentOperation.Status.FAILED, error_code="canceled")
        operation_settle(
            operation_open_locked(payment, PaymentOperation.Kind.VOID),
            PaymentOperation.Status.SUCCEEDED,
            provider_object_id=intent.id,
        )
        if payment.status in (
            Payment.Status.PENDING,
            Payment.Status.REQUIRES_ACTION,
            Payment.Status.AUTHORIZED,
        ):
            was_authorizing = payment.status != Payment.Status.AUTHORIZED
            payment.status = Payment.Status.VOIDED
            payment.save(update_fields=["status", "updated_at"])
            if was_authorizing and order.status == OrderStatus.PENDING_PAYMENT:
                order_transition_locked(
                    order=order,
                    transition="fail_payment",
                    actor=actor,
                    reason="payment canceled at the provider",
                )
        return False
    if status == "succeeded":
        capture = operation_open_locked(payment, PaymentOperation.Kind.CAPTURE)
        if capture is not None or payment.status == Payment.Status.AUTHORIZED:
            capture_succeeded_locked(
                order=order,
                payment=payment,
                operation=capture,
                amount_received=intent.amount_received,
                actor=actor,
            )
    return False


def capture_succeeded_locked(
    *,
    order: Order,
    payment: Payment,
    operation: PaymentOperation | None,
    amount_received: int,
    actor: Actor,
) -> None:
    """Record a capture and ship the order (a capture happens only at shipment)."""
    operation_settle(operation, PaymentOperation.Status.SUCCEEDED)
    if payment.status == Payment.Status.AUTHORIZED:
        payment.status = Payment.Status.CAPTURED
        payment.amount_captured = min(amount_received or payment.amount, payment.amount)
        payment.save(update_fields=["status", "amount_captured", "updated_at"])
    if order.status == OrderStatus.CONFIRMED:
        order_transition_locked(
            order=order, transition="route", actor=actor, reason="shipped manually"
        )
    if order.status == OrderStatus.ROUTED:
        order_transition_locked(
            order=order, transition="ship", actor=actor, reason="payment captured"
        )


def refund_recorded_locked(
    *, order: Order, payment: Payment, amount_refunded_total: int, actor: Actor
) -> None:
    """Raise the refunded amount to the provider's total; fully refunded orders move on."""
    total = min(amount_refunded_total, payment.amount_captured)
    if total > payment.amount_refunded:
        payment.amount_refunded = total
        payment.save(update_fields=["amount_refunded", "updated_at"])
    fully_refunded = payment.amount_captured > 0 and payment.amount_refunded >= (
        payment.amount_captured
    )
    if fully_refunded and order.status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
        order_transition_locked(
            order=order, transition="refund", actor=actor, reason="fully refunded"
        )


def operation_failure_record(
    operation: PaymentOperation, outcome: Outcome[Any], *, action: str
) -> DomainError:
    """Record a capture's or refund's failed call on its locked operation; return the
    error for the client. A definite refusal fails the operation; anything that may have
    reached the provider leaves it unknown, to be sent again with the same key."""
    if outcome.kind in (OutcomeKind.DECLINED, OutcomeKind.REJECTED):
        operation_settle(
            operation,
            PaymentOperation.Status.FAILED,
            error_code=outcome.error_code,
            message=outcome.message,
        )
        return PaymentRejected(f"The {action} was refused: {outcome.message or outcome.error_code}")
    never_sent = outcome.kind is OutcomeKind.NOT_SENT and operation.attempts <= 1
    operation.status = (
        PaymentOperation.Status.FAILED if never_sent else PaymentOperation.Status.UNKNOWN
    )
    operation.error_code = outcome.error_code
    operation.save(update_fields=["status", "error_code", "updated_at"])
    return PaymentProviderUnavailable(retry_after=retry_after_seconds())
