"""Refund captured money, fully or in parts, never beyond what was captured."""

import uuid
from collections.abc import Callable

from django.db import transaction
from django.db.models import Sum

from core.actors import Actor
from core.errors import InvalidTransition
from orders.models import Order
from orders.services import order_lock
from orders.states import OrderStatus
from payments.errors import RefundExceedsCaptured
from payments.models import Payment, PaymentOperation
from payments.services.outcomes import OutcomeKind, operation_send
from payments.services.state import (
    OPEN_OPERATION_STATUSES,
    operation_failure_record,
    operation_settle,
    refund_recorded_locked,
)

REFUNDABLE_STATUSES = (OrderStatus.SHIPPED, OrderStatus.DELIVERED)


def _refund_prepare(
    *,
    order_id: uuid.UUID | str,
    amount: int | None,
    resume_operation_id: int | None,
    on_prepared: Callable[[PaymentOperation], None] | None,
) -> tuple[Payment, PaymentOperation]:
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if resume_operation_id is not None:
            operation = (
                PaymentOperation.objects.select_for_update()
                .select_related("payment")
                .filter(
                    pk=resume_operation_id,
                    kind=PaymentOperation.Kind.REFUND,
                    payment__order=order,
                )
                .first()
            )
            # A refund that definitely failed (never sent: breaker open) is made anew.
            if operation is not None and operation.status != PaymentOperation.Status.FAILED:
                return operation.payment, operation
        if order.status not in REFUNDABLE_STATUSES:
            raise InvalidTransition(transition="refund", current_status=order.status)
        payment = (
            Payment.objects.select_for_update()
            .filter(order=order, status=Payment.Status.CAPTURED)
            .first()
        )
        if payment is None:
            raise RefundExceedsCaptured("Nothing was captured for this order.", captured=0)
        in_flight = (
            PaymentOperation.objects.filter(
                payment=payment,
                kind=PaymentOperation.Kind.REFUND,
                status__in=OPEN_OPERATION_STATUSES,
            ).aggregate(total=Sum("amount"))["total"]
            or 0
        )
        refundable = payment.amount_captured - payment.amount_refunded - in_flight
        requested = refundable if amount is None else amount
        if requested <= 0 or requested > refundable:
            raise RefundExceedsCaptured(
                f"Requested {requested}, but only {max(refundable, 0)} of the captured "
                f"{payment.amount_captured} can still be refunded.",
                captured=payment.amount_captured,
                refunded=payment.amount_refunded,
                refundable=max(refundable, 0),
            )
        operation = PaymentOperation.objects.create(
            payment=payment, kind=PaymentOperation.Kind.REFUND, amount=requested
        )
        if on_prepared is not None:
            on_prepared(operation)
        return payment, operation


def _refunds_succeeded_total(payment: Payment) -> int:
    total: int | None = PaymentOperation.objects.filter(
        payment=payment,
        kind=PaymentOperation.Kind.REFUND,
        status=PaymentOperation.Status.SUCCEEDED,
    ).aggregate(total=Sum("amount"))["total"]
    return total or 0


def order_refund(
    *,
    order_id: uuid.UUID | str,
    amount: int | None,
    actor: Actor,
    resume_operation_id: int | None = None,
    on_prepared: Callable[[PaymentOperation], None] | None = None,
) -> Order:
    """Refund `amount` (all that is left when None). A full refund moves the order to
    refunded; partial refunds keep its status and add to the payment's refunded amount.

    `resume_operation_id` re-sends an earlier refund operation (same key) instead of
    making a new one; `on_prepared` runs inside the transaction that records it.
    """
    payment, operation = _refund_prepare(
        order_id=order_id,
        amount=amount,
        resume_operation_id=resume_operation_id,
        on_prepared=on_prepared,
    )
    if operation.status in OPEN_OPERATION_STATUSES:
        intent_id = payment.provider_payment_id or ""
        outcome = operation_send(
            operation,
            lambda gateway: gateway.refund(
                intent_id=intent_id,
                amount=operation.amount,
                idempotency_key=operation.idempotency_key,
            ),
        )
    else:
        outcome = None
    with transaction.atomic():
        order = order_lock(order_id=payment.order_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        operation = PaymentOperation.objects.select_for_update().get(pk=operation.pk)
        if outcome is None or operation.status == PaymentOperation.Status.SUCCEEDED:
            return order
        if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
            operation_settle(
                operation, PaymentOperation.Status.SUCCEEDED, provider_object_id=outcome.result.id
            )
            refund_recorded_locked(
                order=order,
                payment=payment,
                amount_refunded_total=_refunds_succeeded_total(payment),
                actor=actor,
            )
            return order
        failure = operation_failure_record(operation, outcome, action="refund")
    raise failure
