"""Pay for an order: authorize its total (manual capture) and confirm it. The only
module that takes `retry_payment`.

Sequence: (1) lock the order and its live payment; pick or create the payment and its
authorize operation (an operation whose outcome is unknown is sent again with the same
key, so at most one authorization exists for it), commit; (2) call the provider
outside any transaction; (3) lock order, payment and operation again and record the
outcome through flows.payment_outcomes; (4) void a stray authorization, if any.
"""

import uuid

from django.db import transaction

from core.actors import Actor
from flows.lock_objects import operation_lock, order_lock, order_payment_lock
from flows.payment_outcomes import (
    order_confirm_locked,
    order_payment_failed_locked,
    payment_declined_locked,
    payment_intent_apply_locked,
)
from flows.void import payment_void
from orders.errors import InvalidTransition
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus
from payments.errors import (
    OperationInProgress,
    PaymentDeclined,
    PaymentProviderUnavailable,
    PaymentRejected,
)
from payments.gateways.base import IntentResult
from payments.models import Payment, PaymentOperation
from payments.provider import retry_after_seconds
from payments.services.operations import (
    LIVE_PAYMENT_STATUSES,
    operation_mark_unknown,
    operation_open_locked,
    operation_resend,
    operation_settle,
    payment_create,
    payment_fail,
)
from payments.services.outcomes import Outcome, OutcomeKind, operation_send


def _payment_retry_locked(order: Order, actor: Actor) -> None:
    if order.status == OrderStatus.PAYMENT_FAILED:
        order_transition_locked(
            order=order, transition="retry_payment", actor=actor, reason="payment retry"
        )


def _authorize_prepare(
    *, order_id: uuid.UUID | str, payment_method: str, actor: Actor
) -> tuple[Payment, PaymentOperation | None]:
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        payment = order_payment_lock(order=order, statuses=LIVE_PAYMENT_STATUSES)
        if payment is not None and payment.status == Payment.Status.AUTHORIZED:
            # Authorized already (e.g. found by the reconciler after an outage): use it,
            # unless it is being voided.
            if operation_open_locked(payment, PaymentOperation.Kind.VOID) is not None:
                raise OperationInProgress("The previous authorization is being released.")
            _payment_retry_locked(order, actor)
            if order.status == OrderStatus.PENDING_PAYMENT:
                order_confirm_locked(order=order, actor=actor, reason="payment authorized")
            return payment, None
        if payment is not None and payment.status != Payment.Status.PENDING:
            # Captured, or waiting for 3-D Secure: nothing to send.
            return payment, None
        if order.status == OrderStatus.PAYMENT_FAILED:
            _payment_retry_locked(order, actor)
        elif order.status != OrderStatus.PENDING_PAYMENT:
            raise InvalidTransition(transition="pay", current_status=order.status)
        if payment is not None:
            operation = operation_open_locked(payment, PaymentOperation.Kind.AUTHORIZE)
            if operation is not None and operation.status == PaymentOperation.Status.PENDING:
                # In flight: sending it again would get the provider's 409 and fail the
                # order under the request that is about to authorize it.
                raise OperationInProgress("The payment for this order is being authorized.")
            if operation is not None:
                operation_resend(operation)  # unknown outcome: same key again
                return payment, operation
            payment_fail(payment, decline_code="")
        return payment_create(
            order_id=order.pk,
            payment_method=payment_method,
            amount=order.total_amount,
            currency=order.currency,
        )


def _authorize_record(
    *, payment: Payment, operation: PaymentOperation, outcome: Outcome[IntentResult], actor: Actor
) -> bool:
    """Record the outcome; return True when a stray authorization must be voided."""
    with transaction.atomic():
        locked = operation_lock(operation_id=operation.pk)
        order, payment, operation_locked = locked.order, locked.payment, locked.operation
        if operation_locked.status not in (
            PaymentOperation.Status.PENDING,
            PaymentOperation.Status.UNKNOWN,
        ):
            return False  # a webhook or the reconciler recorded it first
        if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
            return payment_intent_apply_locked(
                order=order,
                payment=payment,
                intent=outcome.result,
                actor=actor,
            )
        declined = outcome.kind in (OutcomeKind.DECLINED, OutcomeKind.REJECTED)
        never_sent = outcome.kind is OutcomeKind.NOT_SENT and operation_locked.attempts <= 1
        if declined or never_sent:
            # Definite: nothing was authorized for this attempt.
            operation_settle(
                operation_locked,
                PaymentOperation.Status.FAILED,
                error_code=outcome.error_code,
                message=outcome.message,
            )
            payment_declined_locked(
                order=order,
                payment=payment,
                decline_code=outcome.error_code if declined else "",
                actor=actor,
                reason=f"payment declined: {outcome.error_code}"
                if declined
                else "payment provider unavailable",
            )
        else:
            # It may have reached the provider: it stays unknown, for a retry with the
            # same key or the reconciler; the order's attempt failed for now.
            operation_mark_unknown(operation_locked, outcome)
            order_payment_failed_locked(
                order=order, actor=actor, reason="payment provider unavailable"
            )
        return False


def order_pay(*, order_id: uuid.UUID | str, payment_method: str, actor: Actor) -> Payment:
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
    outcome: Outcome[IntentResult] = operation_send(
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
    payment = Payment.objects.get(pk=payment.pk)
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


def order_payment_retry(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Staff: let the customer try to pay again while the stock is still held."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_transition_locked(order=order, transition="retry_payment", actor=actor, reason=reason)
    return order
