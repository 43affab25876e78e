"""Capture the authorized amount when the order ships: exactly once."""

import uuid

from django.db import transaction

from core.actors import Actor
from core.errors import InvalidTransition
from orders.models import Order
from orders.services import order_lock
from orders.states import OrderStatus
from payments.errors import (
    OperationInProgress,
    PaymentNotCapturable,
)
from payments.models import Payment, PaymentOperation
from payments.services.outcomes import OutcomeKind, operation_send
from payments.services.state import capture_succeeded_locked, operation_failure_record

SHIPPABLE_STATUSES = (OrderStatus.CONFIRMED, OrderStatus.ROUTED)


def _capture_prepare(*, order_id: uuid.UUID | str) -> tuple[Payment, PaymentOperation]:
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if order.status not in SHIPPABLE_STATUSES:
            raise InvalidTransition(transition="ship", current_status=order.status)
        payment = (
            Payment.objects.select_for_update()
            .filter(order=order, status=Payment.Status.AUTHORIZED)
            .first()
        )
        if payment is None:
            raise PaymentNotCapturable(f"Order {order.number} has no authorized payment.")
        operation = (
            PaymentOperation.objects.select_for_update()
            .filter(payment=payment, kind=PaymentOperation.Kind.CAPTURE)
            .exclude(status=PaymentOperation.Status.FAILED)
            .first()
        )
        if operation is None:
            operation = PaymentOperation.objects.create(
                payment=payment, kind=PaymentOperation.Kind.CAPTURE, amount=payment.amount
            )
        elif operation.status == PaymentOperation.Status.PENDING:
            raise OperationInProgress("The capture for this order is in flight.")
        else:
            # Unknown outcome: send it again, same key. Pending marks it in flight.
            operation.status = PaymentOperation.Status.PENDING
            operation.save(update_fields=["status", "updated_at"])
        return payment, operation


def order_ship(*, order_id: uuid.UUID | str, actor: Actor) -> Order:
    """Capture the authorized amount, then ship the order (moving its stock out).

    A capture with an unknown outcome is sent again with the same key on the next call.
    """
    payment, operation = _capture_prepare(order_id=order_id)
    intent_id = payment.provider_payment_id or ""
    outcome = operation_send(
        operation,
        lambda gateway: gateway.capture(
            intent_id=intent_id, amount=operation.amount, idempotency_key=operation.idempotency_key
        ),
    )
    with transaction.atomic():
        order = order_lock(order_id=payment.order_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        operation = PaymentOperation.objects.select_for_update().get(pk=operation.pk)
        if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
            capture_succeeded_locked(
                order=order,
                payment=payment,
                operation=operation,
                amount_received=outcome.result.amount_received,
                actor=actor,
            )
            return order
        if operation.status == PaymentOperation.Status.SUCCEEDED:
            return order  # a webhook recorded the capture first
        failure = operation_failure_record(operation, outcome, action="capture")
    raise failure
