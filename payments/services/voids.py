"""Release an authorization the order no longer needs (cancelled, expired, stray)."""

import uuid

from django.db import IntegrityError, transaction

from core.actors import Actor
from orders.services import order_lock
from orders.states import OrderStatus
from payments.models import Payment, PaymentOperation
from payments.services.outcomes import OutcomeKind, operation_send
from payments.services.state import intent_apply_locked, operation_open_locked, operation_settle

VOIDABLE_STATUSES = (Payment.Status.AUTHORIZED, Payment.Status.REQUIRES_ACTION)


# Order states that use their authorization: never void it under them.
ORDER_STATUSES_USING_PAYMENT = (
    OrderStatus.CONFIRMED,
    OrderStatus.ROUTED,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
    OrderStatus.REFUNDED,
)


def _void_prepare(*, payment_id: int) -> tuple[Payment, PaymentOperation] | None:
    with transaction.atomic():
        order_id = Payment.objects.values_list("order_id", flat=True).get(pk=payment_id)
        order = order_lock(order_id=order_id)
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        # A failed attempt authorized late (another attempt is the order's) holds money too.
        late = payment.status == Payment.Status.FAILED
        if (
            payment.status not in VOIDABLE_STATUSES and not late
        ) or not payment.provider_payment_id:
            return None
        if order.status in ORDER_STATUSES_USING_PAYMENT and not late:
            return None
        operation = operation_open_locked(payment, PaymentOperation.Kind.VOID)
        if operation is None:
            try:
                with transaction.atomic():
                    operation = PaymentOperation.objects.create(
                        payment=payment, kind=PaymentOperation.Kind.VOID, amount=payment.amount
                    )
            except IntegrityError:
                return None  # a void already succeeded
        return payment, operation


def payment_void(*, payment_id: int, actor: Actor) -> bool:
    """Cancel the PaymentIntent. Return True when it is voided; an unknown outcome is
    left for the reconciler, which sends the same operation (same key) again."""
    prepared = _void_prepare(payment_id=payment_id)
    if prepared is None:
        return False
    payment, operation = prepared
    intent_id = payment.provider_payment_id or ""
    outcome = operation_send(
        operation,
        lambda gateway: gateway.cancel(
            intent_id=intent_id, idempotency_key=operation.idempotency_key
        ),
    )
    with transaction.atomic():
        order = order_lock(order_id=payment.order_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        operation = PaymentOperation.objects.select_for_update().get(pk=operation.pk)
        if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
            intent_apply_locked(order=order, payment=payment, intent=outcome.result, actor=actor)
            operation_settle(operation, PaymentOperation.Status.SUCCEEDED)
            return payment.status == Payment.Status.VOIDED
        if outcome.kind in (OutcomeKind.DECLINED, OutcomeKind.REJECTED):
            operation_settle(
                operation,
                PaymentOperation.Status.FAILED,
                error_code=outcome.error_code,
                message=outcome.message,
            )
        elif operation.status == PaymentOperation.Status.PENDING:
            operation.status = PaymentOperation.Status.UNKNOWN
            operation.error_code = outcome.error_code
            operation.save(update_fields=["status", "error_code", "updated_at"])
    return False


def payments_void_for_order(*, order_id: uuid.UUID | str, actor: Actor) -> None:
    """Void every live authorization of the order (after it was cancelled or expired)."""
    payment_ids = list(
        Payment.objects.filter(order_id=order_id, status__in=VOIDABLE_STATUSES).values_list(
            "pk", flat=True
        )
    )
    for payment_id in payment_ids:
        payment_void(payment_id=payment_id, actor=actor)
