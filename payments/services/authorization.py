"""Authorize an order's payment: record the operation, call the provider, record the outcome."""

import uuid

from django.db import transaction

from core.actors import Actor
from core.errors import InvalidTransition
from orders.models import Order
from orders.services import order_lock, order_transition_locked
from orders.states import OrderStatus
from payments.errors import (
    OperationInProgress,
    PaymentDeclined,
    PaymentProviderUnavailable,
    PaymentRejected,
)
from payments.models import Payment, PaymentOperation
from payments.provider import retry_after_seconds
from payments.services.outcomes import Outcome, OutcomeKind, operation_send
from payments.services.state import (
    LIVE_PAYMENT_STATUSES,
    intent_apply_locked,
    operation_open_locked,
    operation_settle,
    payment_fail_locked,
)
from payments.services.voids import payment_void

AUTHORIZE_AFTER_STATUSES = (OrderStatus.PENDING_PAYMENT, OrderStatus.PAYMENT_FAILED)


def _authorize_prepare(
    *, order_id: uuid.UUID | str, payment_method: str, actor: Actor
) -> tuple[Payment, PaymentOperation | None]:
    """Lock the order, pick or create the payment and its authorize operation, commit.

    An authorize operation whose outcome is unknown is sent again with the same key
    (so at most one authorization exists for it); a new one is made only after a
    definite failure.
    """
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        payment = (
            Payment.objects.select_for_update()
            .filter(order=order, status__in=LIVE_PAYMENT_STATUSES)
            .first()
        )
        if payment is not None and payment.status == Payment.Status.AUTHORIZED:
            # Authorized already (e.g. found by the reconciler after an outage): use it,
            # unless it is being voided.
            if operation_open_locked(payment, PaymentOperation.Kind.VOID) is not None:
                raise OperationInProgress("The previous authorization is being released.")
            if order.status == OrderStatus.PAYMENT_FAILED:
                order_transition_locked(
                    order=order, transition="retry_payment", actor=actor, reason="payment retry"
                )
            if order.status == OrderStatus.PENDING_PAYMENT:
                order_transition_locked(
                    order=order, transition="confirm", actor=actor, reason="payment authorized"
                )
            return payment, None
        if payment is not None and payment.status != Payment.Status.PENDING:
            # Captured, or waiting for 3-D Secure: nothing to send.
            return payment, None
        if order.status == OrderStatus.PAYMENT_FAILED:
            order_transition_locked(
                order=order, transition="retry_payment", actor=actor, reason="payment retry"
            )
        elif order.status != OrderStatus.PENDING_PAYMENT:
            raise InvalidTransition(transition="pay", current_status=order.status)
        if payment is not None:
            operation = operation_open_locked(payment, PaymentOperation.Kind.AUTHORIZE)
            if operation is not None and operation.status == PaymentOperation.Status.PENDING:
                # In flight: sending it again would get the provider's 409 and fail the
                # order under the request that is about to authorize it.
                raise OperationInProgress("The payment for this order is being authorized.")
            if operation is not None:
                # Unknown outcome: send it again, same key. Pending marks it in flight.
                operation.status = PaymentOperation.Status.PENDING
                operation.save(update_fields=["status", "updated_at"])
                return payment, operation
            payment.status = Payment.Status.FAILED
            payment.save(update_fields=["status", "updated_at"])
        payment = Payment.objects.create(
            order=order,
            payment_method=payment_method,
            amount=order.total_amount,
            currency=order.currency,
        )
        operation = PaymentOperation.objects.create(
            payment=payment, kind=PaymentOperation.Kind.AUTHORIZE, amount=payment.amount
        )
        return payment, operation


def _authorize_record(
    *, payment: Payment, operation: PaymentOperation, outcome: Outcome, actor: Actor
) -> bool:
    """Record the outcome; return True when a stray authorization must be voided."""
    with transaction.atomic():
        order: Order = order_lock(order_id=payment.order_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        operation = PaymentOperation.objects.select_for_update().get(pk=operation.pk)
        if operation.status not in (
            PaymentOperation.Status.PENDING,
            PaymentOperation.Status.UNKNOWN,
        ):
            return False  # a webhook or the reconciler recorded it first
        if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
            return intent_apply_locked(
                order=order, payment=payment, intent=outcome.result, actor=actor
            )
        if outcome.kind in (OutcomeKind.DECLINED, OutcomeKind.REJECTED):
            operation_settle(
                operation,
                PaymentOperation.Status.FAILED,
                error_code=outcome.error_code,
                message=outcome.message,
            )
            payment_fail_locked(
                order=order,
                payment=payment,
                decline_code=outcome.error_code,
                actor=actor,
                reason=f"payment declined: {outcome.error_code}",
            )
            return False
        # Unknown or not sent: the order's attempt failed for now. An operation that
        # may have reached the provider stays unknown, for a retry with the same key
        # or the reconciler; one that never left is definitely failed.
        if outcome.kind is OutcomeKind.NOT_SENT and operation.attempts <= 1:
            operation_settle(
                operation,
                PaymentOperation.Status.FAILED,
                error_code=outcome.error_code,
                message=outcome.message,
            )
            payment_fail_locked(
                order=order,
                payment=payment,
                decline_code="",
                actor=actor,
                reason="payment provider unavailable",
            )
        else:
            operation.status = PaymentOperation.Status.UNKNOWN
            operation.error_code = outcome.error_code
            operation.error_message = outcome.message[:500]
            operation.save(update_fields=["status", "error_code", "error_message", "updated_at"])
            if order.status == OrderStatus.PENDING_PAYMENT:
                order_transition_locked(
                    order=order,
                    transition="fail_payment",
                    actor=actor,
                    reason="payment provider unavailable",
                )
        return False


def payment_authorize(*, order_id: uuid.UUID | str, payment_method: str, actor: Actor) -> Payment:
    """Authorize the order's total (manual capture). Confirm the order when authorized.

    Raise PaymentDeclined (order payment_failed, stock still held until expiry),
    PaymentProviderUnavailable (order payment_failed, the attempt left to a retry or
    the reconciler) or PaymentRejected. A payment waiting for 3-D Secure is returned
    with status requires_action; the webhook finishes it.
    """
    payment, operation = _authorize_prepare(
        order_id=order_id, payment_method=payment_method, actor=actor
    )
    if operation is None:
        return payment
    order = payment.order
    outcome = operation_send(
        operation,
        lambda gateway: gateway.authorize(
            amount=payment.amount,
            currency=payment.currency.lower(),
            payment_method=payment.payment_method,
            idempotency_key=operation.idempotency_key,
            metadata={
                "order_id": str(order.pk),
                "order_number": order.number,
                "payment_id": str(payment.pk),
            },
        ),
    )
    needs_void = _authorize_record(
        payment=payment, operation=operation, outcome=outcome, actor=actor
    )
    if needs_void:
        payment_void(payment_id=payment.pk, actor=actor)
    payment.refresh_from_db()
    if payment.status in (
        Payment.Status.AUTHORIZED,
        Payment.Status.REQUIRES_ACTION,
        Payment.Status.CAPTURED,
    ):
        return payment
    if payment.status == Payment.Status.FAILED:
        if outcome.kind is OutcomeKind.REJECTED:
            raise PaymentRejected(outcome.message, order_id=str(order.pk))
        if outcome.kind is OutcomeKind.NOT_SENT:
            raise PaymentProviderUnavailable(
                retry_after=retry_after_seconds(), order_id=str(order.pk)
            )
        raise PaymentDeclined(
            decline_code=payment.decline_code or outcome.error_code,
            message=outcome.message,
            order_id=str(order.pk),
            order_number=order.number,
        )
    raise PaymentProviderUnavailable(retry_after=retry_after_seconds(), order_id=str(order.pk))
