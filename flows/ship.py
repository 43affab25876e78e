"""Ship an order: capture its payment exactly once, then move its stock out.
The only module that takes `ship`.

Transactions: (1) lock the order and payment, record (or re-open, same key) the capture
operation, commit; (2) call the provider, outside any transaction; (3) lock order,
payment and operation again and record the outcome: a capture ships the order and
commits its reservations, in that one transaction. Whichever path records the capture
first (this request, the webhook, the reconciler) ships the order; the others find it
done. An order without a payment (paid offline) ships without a provider call.
"""

import uuid

from django.db import transaction

from core.actors import Actor
from flows.deliver import order_deliver_if_complete_locked
from flows.lock_objects import operation_lock, order_lock, order_operation_lock, order_payment_lock
from flows.route import order_route_locked
from fulfilment.services import shipments_all_left
from inventory.services import reservations_commit
from orders.audit import order_event_record
from orders.errors import InvalidTransition
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus
from payments.errors import OperationInProgress, PaymentNotCapturable
from payments.models import Payment, PaymentOperation
from payments.services.operations import (
    operation_create,
    operation_failure_record,
    operation_resend,
    payment_capture_record,
    payment_event_data,
)
from payments.services.outcomes import OutcomeKind, operation_send

SHIPPABLE_STATUSES = (OrderStatus.CONFIRMED, OrderStatus.ROUTED)


def _ship_locked(*, order: Order, actor: Actor, reason: str) -> None:
    order_transition_locked(order=order, transition="ship", actor=actor, reason=reason)
    reservations_commit(
        order_line_ids=order.lines.values_list("pk", flat=True),
        actor=actor,
        reason=reason or f"order {order.number} shipped",
    )


def order_capture_recorded_locked(
    *, order: Order, actor: Actor, reason: str = "payment captured"
) -> None:
    """A capture was recorded: the order ships (a capture happens only at shipment).

    A capture on an order that no longer ships (cancelled or expired: a capture made at
    the provider behind oms's back) is refunded by the reconciler.
    """
    if order.status == OrderStatus.CONFIRMED:
        order_route_locked(order=order, actor=actor, reason="shipped manually")
    if order.status == OrderStatus.ROUTED:
        _ship_locked(order=order, actor=actor, reason=reason)


def _capture_prepare(*, order_id: uuid.UUID | str) -> tuple[Payment, PaymentOperation]:
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if order.status not in SHIPPABLE_STATUSES:
            raise InvalidTransition(transition="ship", current_status=order.status)
        payment = order_payment_lock(order=order, statuses=[Payment.Status.AUTHORIZED])
        if payment is None:
            raise PaymentNotCapturable(f"Order {order.number} has no authorized payment.")
        operation = order_operation_lock(
            order=order,
            kind=PaymentOperation.Kind.CAPTURE,
            exclude_status=PaymentOperation.Status.FAILED,
        )
        if operation is None:
            operation = operation_create(payment, PaymentOperation.Kind.CAPTURE, payment.amount)
        elif operation.status == PaymentOperation.Status.PENDING:
            raise OperationInProgress("The capture for this order is in flight.")
        else:
            operation_resend(operation)  # unknown outcome: same key again
        return payment, operation


def _order_capture_and_ship(*, order_id: uuid.UUID | str, actor: Actor, reason: str) -> Order:
    payment, operation = _capture_prepare(order_id=order_id)
    intent_id = payment.provider_payment_id or ""
    outcome = operation_send(
        operation,
        lambda gateway: gateway.capture(
            intent_id=intent_id, amount=operation.amount, idempotency_key=operation.idempotency_key
        ),
    )
    with transaction.atomic():
        locked = operation_lock(operation_id=operation.pk)
        if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
            payment_capture_record(
                locked.payment, locked.operation, amount_received=outcome.result.amount_received
            )
            order_event_record(
                order=locked.order,
                type="payment.captured",
                change=payment_event_data(locked.payment),
            )
            order_capture_recorded_locked(
                order=locked.order, actor=actor, reason=reason or "payment captured"
            )
            return locked.order
        if locked.operation.status == PaymentOperation.Status.SUCCEEDED:
            return locked.order  # a webhook recorded the capture first
        failure = operation_failure_record(locked.operation, outcome, action="capture")
    raise failure


def order_ship(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Ship the order: capture its authorized payment first when it has one.

    A capture with an unknown outcome is sent again with the same key on the next call.
    """
    if Payment.objects.filter(order_id=order_id, status=Payment.Status.AUTHORIZED).exists():
        return _order_capture_and_ship(order_id=order_id, actor=actor, reason=reason)
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        _ship_locked(order=order, actor=actor, reason=reason)
    return order


def order_ship_when_shipments_left(*, order_id: uuid.UUID | str, actor: Actor) -> None:
    """A warehouse reported a shipment shipped: once every shipment of the order left,
    capture and ship it; count deliveries reported while the capture was pending.

    A provider that cannot be reached raises, so the outbox task retries.
    """
    if not shipments_all_left(order_id=order_id):
        return
    if Order.objects.filter(pk=order_id, status=OrderStatus.ROUTED).exists():
        order_ship(order_id=order_id, actor=actor, reason="warehouse shipped")
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_deliver_if_complete_locked(order=order, actor=actor)
