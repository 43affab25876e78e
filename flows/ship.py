"""Ship an order: capture its payment exactly once, then move its stock out.
The only module that takes `ship`.

Transactions: (1) lock the order and payment, record (or re-open, same key) the capture
operation, commit; (2) call the provider, outside any transaction; (3) lock order,
payment and operation again and record the outcome: a capture ships the order and
commits its reservations, in that one transaction. Whichever path records the capture
first (this request, the webhook, the reconciler) ships the order; the others find it
done. An order without a payment (paid offline) ships without a provider call.

Partial shipments: a PaymentIntent is captured once (Stripe captures more than once only
with multicapture, which the fake provider does not offer), so a partially shipped order
is captured when nothing is left to ship: its last shipment left, or the rest was
cancelled (flows.cancel). The capture takes the authorized amount less the value of the
units that will never ship (`order_capture_amount`), never more than was authorized; the
provider releases what is not captured.
"""

import uuid

from django.db import transaction
from django.db.models import F

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

SHIPPABLE_STATUSES = (OrderStatus.CONFIRMED, OrderStatus.ROUTED, OrderStatus.PARTIALLY_SHIPPED)


def order_capture_amount(*, order: Order, authorized: int) -> int:
    """What to capture when the order ships: all that was authorized, less the units that
    did not ship when it ships in part (the rest was cancelled): their unit prices and
    their lines' tax on them (a line's shipped units keep floor(tax x shipped / quantity),
    the share a return of them would refund). Shipping and its tax are kept."""
    # An edit may have lowered the total of an authorized order: capture no more than it.
    authorized = min(authorized, order.total_amount)
    if order.status != OrderStatus.PARTIALLY_SHIPPED:
        return authorized
    unshipped = sum(
        line.unit_price * (line.quantity - line.shipped_quantity)
        + line.tax_amount
        - (line.tax_amount * line.shipped_quantity) // line.quantity
        for line in order.lines.all()
        if line.quantity
    )
    return max(0, min(authorized, authorized - unshipped))


def _ship_locked(*, order: Order, actor: Actor, reason: str) -> None:
    if order.status != OrderStatus.PARTIALLY_SHIPPED:
        # The whole order leaves at once: every unit of every line ships.
        order.lines.update(shipped_quantity=F("quantity"))
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
    if order.status in (OrderStatus.ROUTED, OrderStatus.PARTIALLY_SHIPPED):
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
            operation = operation_create(
                payment,
                PaymentOperation.Kind.CAPTURE,
                order_capture_amount(order=order, authorized=payment.amount),
            )
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
    A partially shipped order ships only once nothing is left at a warehouse (the rest
    shipped or was cancelled).
    """
    status = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
    if status == OrderStatus.PARTIALLY_SHIPPED and not shipments_all_left(order_id=order_id):
        raise InvalidTransition(
            transition="ship",
            current_status=status,
            why="units are still at a warehouse: they ship, or the rest is cancelled",
        )
    if Payment.objects.filter(
        order_id=order_id, status=Payment.Status.AUTHORIZED, is_current=True
    ).exists():
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
    if Order.objects.filter(
        pk=order_id, status__in=[OrderStatus.ROUTED, OrderStatus.PARTIALLY_SHIPPED]
    ).exists():
        order_ship(order_id=order_id, actor=actor, reason="warehouse shipped")
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_deliver_if_complete_locked(order=order, actor=actor)
