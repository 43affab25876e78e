"""Returns (RMA): a customer or support opens a return for some units of a shipped
order; staff authorize (or the return window does), reject, or it is cancelled; the
units are received (the warehouse's signed callback or staff), restocked or disposed of
line by line; then the return is refunded through the refund path. The only module that
takes `return_partially` and `return_fully`, and every return transition.

Every use case locks the order first (flows.lock_objects), so returns of one order are
serialized and a line's `returned_quantity` never exceeds what shipped. The refund is
three steps like flows.refund: (1) compute the amount and record the refund operation
on the return (one operation per return: a retry re-sends the same provider key);
(2) the provider call, outside any transaction; (3) mark the return refunded and move
the order to partially_returned or returned.
"""

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.errors import ConcurrentUpdate, NotFound
from core.outbox import outbox_publish
from flows.lock_objects import order_lock
from flows.refund import order_refund
from inventory.models import Reservation, Warehouse
from inventory.services import stock_return
from orders.errors import InvalidReturnTransition, ReturnLineUnknown, ReturnNotReturnable
from orders.models import Order, OrderStatusChange, Return
from orders.returns import (
    ReturnLineData,
    order_units_all_returned,
    return_create_locked,
    return_refund_amount,
    return_summary,
    return_transition_locked,
)
from orders.services import order_transition_locked
from orders.states import RETURNABLE_STATUSES, OrderStatus, ReturnStatus
from payments.models import Payment, PaymentOperation
from payments.services.operations import refunds_in_flight_total


@dataclass(frozen=True)
class ReturnLineRequest:
    sku: str
    quantity: int


def _return_lock(*, order: Order, return_id: uuid.UUID | str) -> Return:
    """Lock one return of the locked order."""
    found = Return.objects.select_for_update().filter(order=order, pk=return_id).first()
    if found is None:
        raise NotFound("No such return.")
    return found


def _shipped_at(order: Order) -> datetime | None:
    """When the order was delivered (or, not yet delivered, shipped)."""
    changes = OrderStatusChange.objects.filter(order=order)
    for transition in ("deliver", "ship"):
        change = changes.filter(transition=transition).order_by("-created_at").first()
        if change is not None:
            return change.created_at
    return None


def _within_return_window(order: Order) -> bool:
    days = settings.RETURN_AUTO_AUTHORIZE_DAYS
    if days <= 0:
        return False
    shipped_at = _shipped_at(order)
    return shipped_at is not None and timezone.now() - shipped_at <= timedelta(days=days)


def _authorized_publish(order: Order, return_request: Return) -> None:
    # The customer's email: what to send back.
    outbox_publish(
        topic="return.authorized",
        payload={
            "order_id": str(order.pk),
            "return_id": str(return_request.pk),
            "lines": return_summary(return_request)["lines"],
        },
        key=f"return-authorized-{return_request.pk}",
    )


def return_open(
    *,
    order_id: uuid.UUID | str,
    lines: Sequence[ReturnLineRequest],
    reason: str,
    actor: Actor,
    on_created: Callable[[Return], None] | None = None,
) -> Return:
    """Open a return for units of a shipped or delivered order. Authorized at once when
    within RETURN_AUTO_AUTHORIZE_DAYS of delivery (or shipment).

    Raise ReturnNotReturnable for an order that did not ship, ReturnLineUnknown for a
    SKU the order does not have, ReturnExceedsShipped for more units than are left.
    """
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if order.status not in RETURNABLE_STATUSES:
            raise ReturnNotReturnable(
                f"Order {order.number} is {order.status}: only shipped, delivered or "
                "partially returned orders take returns.",
                current_status=order.status,
            )
        by_sku = {line.sku: line for line in order.lines.all()}
        unknown = sorted({line.sku for line in lines} - set(by_sku))
        if unknown:
            raise ReturnLineUnknown(
                f"Order {order.number} has no line for {', '.join(unknown)}.", skus=unknown
            )
        return_request = return_create_locked(
            order=order,
            lines=[ReturnLineData(by_sku[line.sku], line.quantity) for line in lines],
            reason=reason,
            actor=actor,
        )
        if _within_return_window(order):
            return_transition_locked(
                order=order,
                return_request=return_request,
                transition="authorize",
                actor=Actor.system(request_id=actor.request_id),
                reason=f"within {settings.RETURN_AUTO_AUTHORIZE_DAYS} days of delivery",
            )
            _authorized_publish(order, return_request)
        if on_created is not None:
            on_created(return_request)
    return return_request


def _return_transition(
    *,
    order_id: uuid.UUID | str,
    return_id: uuid.UUID | str,
    transition: str,
    actor: Actor,
    reason: str,
) -> tuple[Order, Return]:
    """Lock the order and its return and take a staff or customer transition; the caller's
    transaction must be open (it may publish more in it)."""
    order = order_lock(order_id=order_id)
    return_request = _return_lock(order=order, return_id=return_id)
    return_transition_locked(
        order=order,
        return_request=return_request,
        transition=transition,
        actor=actor,
        reason=reason,
    )
    return order, return_request


def return_authorize(
    *, order_id: uuid.UUID | str, return_id: uuid.UUID | str, actor: Actor, reason: str = ""
) -> Return:
    """Staff: the customer may send the units back (they are emailed what to send)."""
    with transaction.atomic():
        order, return_request = _return_transition(
            order_id=order_id,
            return_id=return_id,
            transition="authorize",
            actor=actor,
            reason=reason,
        )
        _authorized_publish(order, return_request)
    return return_request


def return_reject(
    *, order_id: uuid.UUID | str, return_id: uuid.UUID | str, actor: Actor, reason: str = ""
) -> Return:
    """Staff: refuse an open return; its units may be returned again."""
    with transaction.atomic():
        _, return_request = _return_transition(
            order_id=order_id, return_id=return_id, transition="reject", actor=actor, reason=reason
        )
    return return_request


def return_cancel(
    *, order_id: uuid.UUID | str, return_id: uuid.UUID | str, actor: Actor, reason: str = ""
) -> Return:
    """The customer or staff withdraw an open return; its units may be returned again."""
    with transaction.atomic():
        _, return_request = _return_transition(
            order_id=order_id, return_id=return_id, transition="cancel", actor=actor, reason=reason
        )
    return return_request


def _shipped_from(order_line_id: int) -> int | None:
    """The warehouse the line's units left from."""
    warehouse_id: int | None = (
        Reservation.objects.filter(order_line_id=order_line_id, status=Reservation.Status.COMMITTED)
        .order_by("pk")
        .values_list("stock_item__warehouse_id", flat=True)
        .first()
    )
    return warehouse_id


def return_receive_locked(
    *,
    order: Order,
    return_request: Return,
    dispositions: Mapping[str, str],
    warehouse: Warehouse | None,
    actor: Actor,
) -> None:
    """Receive an authorized return (order and return locked): each line is restocked
    into the receiving warehouse (a `return` stock movement) or disposed of (recorded on
    the line); `dispositions` maps SKUs to restock / dispose (unnamed lines: restock).
    Publishes `return.received`: a worker refunds it (return_refund)."""
    if return_request.status != ReturnStatus.AUTHORIZED:
        raise InvalidReturnTransition(transition="receive", current_status=return_request.status)
    lines = list(return_request.lines.select_related("order_line").order_by("pk"))
    unknown = sorted(set(dispositions) - {line.order_line.sku for line in lines})
    if unknown:
        raise ReturnLineUnknown(f"The return has no line for {', '.join(unknown)}.", skus=unknown)
    for line in lines:
        line.disposition = dispositions.get(line.order_line.sku, Return.Disposition.RESTOCK)
        warehouse_id = warehouse.pk if warehouse is not None else _shipped_from(line.order_line_id)
        if line.disposition == Return.Disposition.RESTOCK:
            if warehouse_id is None:
                raise NotFound(f"No warehouse to restock {line.order_line.sku} into; name one.")
            stock_return(
                product_id=line.order_line.product_id,
                warehouse_id=warehouse_id,
                quantity=line.quantity,
                actor=actor,
                reason=f"return {return_request.pk} of order {order.number}",
            )
        line.save(update_fields=["disposition"])
        if return_request.warehouse_id is None and warehouse_id is not None:
            return_request.warehouse_id = warehouse_id
    return_request.save(update_fields=["warehouse", "updated_at"])
    return_transition_locked(
        order=order, return_request=return_request, transition="receive", actor=actor
    )
    outbox_publish(
        topic="return.received",
        payload={"order_id": str(order.pk), "return_id": str(return_request.pk)},
        key=f"return-received-{return_request.pk}",
    )


def return_receive(
    *,
    order_id: uuid.UUID | str,
    return_id: uuid.UUID | str,
    dispositions: Mapping[str, str],
    warehouse_code: str,
    actor: Actor,
) -> Return:
    """Staff (support, warehouse): the return's units arrived."""
    warehouse = None
    if warehouse_code:
        warehouse = Warehouse.objects.filter(code=warehouse_code).first()
        if warehouse is None:
            raise NotFound(f"Unknown warehouse '{warehouse_code}'.")
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        return_request = _return_lock(order=order, return_id=return_id)
        return_receive_locked(
            order=order,
            return_request=return_request,
            dispositions=dispositions,
            warehouse=warehouse,
            actor=actor,
        )
    return return_request


def _return_refunded_locked(*, order: Order, return_request: Return, actor: Actor) -> None:
    """Mark the return refunded; the order is returned once every unit is, else
    partially returned. An order refunded in full meanwhile stays refunded."""
    return_transition_locked(
        order=order, return_request=return_request, transition="refund", actor=actor
    )
    if order_units_all_returned(order=order):
        if order.status in RETURNABLE_STATUSES:
            order_transition_locked(
                order=order, transition="return_fully", actor=actor, reason="every unit returned"
            )
    elif order.status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
        order_transition_locked(
            order=order,
            transition="return_partially",
            actor=actor,
            reason=f"return {return_request.pk}",
        )


def return_refund(*, order_id: uuid.UUID | str, return_id: uuid.UUID | str, actor: Actor) -> Return:
    """Refund a received return, exactly once: its amount (see
    orders.returns.return_refund_amount), never more than is left of the capture after
    earlier refunds. A retry (worker or staff) resumes the same refund operation."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        return_request = _return_lock(order=order, return_id=return_id)
        if return_request.status == ReturnStatus.REFUNDED:
            return return_request
        if return_request.status != ReturnStatus.RECEIVED:
            raise InvalidReturnTransition(transition="refund", current_status=return_request.status)
        resume_operation_id = return_request.refund_operation_id
        # A refund that definitely failed is made anew: its amount too, since other
        # refunds may have been made meanwhile.
        failed = (
            resume_operation_id is not None
            and PaymentOperation.objects.filter(
                pk=resume_operation_id, status=PaymentOperation.Status.FAILED
            ).exists()
        )
        if resume_operation_id is None or failed:
            amount = return_refund_amount(order=order, return_request=return_request)
            payment = Payment.objects.filter(order=order, status=Payment.Status.CAPTURED).first()
            refundable = 0
            if payment is not None:
                refundable = (
                    payment.amount_captured
                    - payment.amount_refunded
                    - refunds_in_flight_total(payment)
                )
            return_request.refund_amount = max(min(amount, refundable), 0)
            return_request.save(update_fields=["refund_amount", "updated_at"])
            if return_request.refund_amount == 0:
                # Nothing left of the capture (earlier refunds, or paid outside oms).
                _return_refunded_locked(order=order, return_request=return_request, actor=actor)
                return return_request
        amount_to_refund = return_request.refund_amount

    def record_operation(operation: PaymentOperation) -> None:
        # The return's operation so far (none, or the one resumed that definitely failed).
        recorded = Return.objects.filter(
            pk=return_request.pk, refund_operation_id=resume_operation_id
        ).update(refund_operation_id=operation.pk)
        if not recorded:
            raise ConcurrentUpdate("Another refund of this return is in progress; retry.")

    order_refund(
        order_id=order_id,
        amount=amount_to_refund,
        actor=actor,
        resume_operation_id=resume_operation_id,
        on_prepared=record_operation,
        refundable_statuses=RETURNABLE_STATUSES,
        full_refund_transition=False,
    )
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        return_request = _return_lock(order=order, return_id=return_id)
        if return_request.status != ReturnStatus.RECEIVED:
            return return_request
        operation_succeeded = (
            return_request.refund_operation_id is not None
            and PaymentOperation.objects.filter(
                pk=return_request.refund_operation_id, status=PaymentOperation.Status.SUCCEEDED
            ).exists()
        )
        if operation_succeeded:
            _return_refunded_locked(order=order, return_request=return_request, actor=actor)
    return return_request
