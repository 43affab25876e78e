"""Writes that belong to returns alone: open one, count its units on the order's lines,
take one of its transitions, compute what it refunds. The return use cases
(flows.returns) call these inside their transactions, with the order row locked."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import F
from django_fsm import ConcurrentTransition, can_proceed

from core.actors import Actor
from core.errors import ConcurrentUpdate
from orders.audit import order_event_record
from orders.errors import InvalidReturnTransition, ReturnExceedsShipped
from orders.models import (
    RETURN_TRANSITIONS,
    Order,
    OrderLine,
    Return,
    ReturnLine,
    ReturnStatusChange,
)
from orders.states import ReturnStatus


@dataclass(frozen=True)
class ReturnLineData:
    order_line: OrderLine
    quantity: int


def return_create_locked(
    *, order: Order, lines: Sequence[ReturnLineData], reason: str, actor: Actor
) -> Return:
    """Open a return on a locked order: count its units on the order's lines, never
    beyond what shipped, then write the return, its audit row and its event.

    Raise ReturnExceedsShipped (and change nothing) when a line has fewer units left.
    """
    for line in sorted(lines, key=lambda data: data.order_line.pk):
        # One conditional update per line: the order lock serializes returns of this
        # order, and the CHECK constraint backs this guard in the database itself.
        counted = OrderLine.objects.filter(
            pk=line.order_line.pk,
            returned_quantity__lte=F("quantity") - line.quantity,
        ).update(returned_quantity=F("returned_quantity") + line.quantity)
        if counted != 1:
            current = OrderLine.objects.get(pk=line.order_line.pk)
            raise ReturnExceedsShipped(
                f"Line {current.sku}: {line.quantity} asked, but only "
                f"{current.quantity - current.returned_quantity} of the {current.quantity} "
                "shipped are not returned yet.",
                sku=current.sku,
                shipped=current.quantity,
                returned=current.returned_quantity,
                returnable=current.quantity - current.returned_quantity,
            )
    return_request = Return.objects.create(order=order, reason=reason[:500])
    ReturnLine.objects.bulk_create(
        ReturnLine(
            return_request=return_request, order_line=line.order_line, quantity=line.quantity
        )
        for line in lines
    )
    _return_record(
        order=order,
        return_request=return_request,
        from_status="",
        transition="open",
        actor=actor,
        reason=reason,
    )
    return return_request


def return_transition_locked(
    *, order: Order, return_request: Return, transition: str, actor: Actor, reason: str = ""
) -> None:
    """Take a return transition (order and return locked by the caller): the machine
    guards it; the audit row and the `return.<status>` event are written with it. A return
    that stops counting (rejected, cancelled) gives its units back to its lines."""
    method = getattr(return_request, transition) if transition in RETURN_TRANSITIONS else None
    if method is None or not can_proceed(method):
        raise InvalidReturnTransition(transition=transition, current_status=return_request.status)
    from_status = return_request.status
    method()
    try:
        return_request.save(update_fields=["status", "updated_at"])
    except ConcurrentTransition as error:
        raise ConcurrentUpdate() from error
    if return_request.status in (ReturnStatus.REJECTED, ReturnStatus.CANCELLED):
        for line in return_request.lines.all():
            OrderLine.objects.filter(pk=line.order_line_id).update(
                returned_quantity=F("returned_quantity") - line.quantity
            )
    _return_record(
        order=order,
        return_request=return_request,
        from_status=from_status,
        transition=transition,
        actor=actor,
        reason=reason,
    )


def return_summary(return_request: Return) -> dict[str, Any]:
    """The return as its events carry it."""
    return {
        "id": str(return_request.pk),
        "status": return_request.status,
        "reason": return_request.reason,
        "refund_amount": return_request.refund_amount,
        "warehouse": return_request.warehouse.code if return_request.warehouse else None,
        "lines": [
            {
                "sku": line.order_line.sku,
                "name": line.order_line.name,
                "quantity": line.quantity,
                "disposition": line.disposition,
            }
            for line in return_request.lines.select_related("order_line").order_by("pk")
        ],
    }


def _return_record(
    *,
    order: Order,
    return_request: Return,
    from_status: str,
    transition: str,
    actor: Actor,
    reason: str,
) -> None:
    ReturnStatusChange.objects.create(
        return_request=return_request,
        from_status=from_status,
        to_status=return_request.status,
        transition=transition,
        actor=actor.user,
        actor_label=actor.label,
        reason=reason[:500],
        request_id=actor.request_id,
    )
    order_event_record(
        order=order,
        type=f"return.{return_request.status}",
        change={
            "return": return_summary(return_request),
            "from_status": from_status,
            "to_status": return_request.status,
            "transition": transition,
            "reason": reason[:500],
        },
    )


def _value(lines: Sequence[ReturnLine]) -> tuple[int, int]:
    """(units, value at unit prices) of these return lines."""
    units = sum(line.quantity for line in lines)
    value = sum(line.order_line.unit_price * line.quantity for line in lines)
    return units, value


def units_refund_amount(*, order: Order, value: int, value_before: int = 0) -> int:
    """Units worth `value` at their unit prices, plus their share of the order's tax: the
    difference of cumulative shares (floor of tax x value / subtotal) after `value_before`
    worth was refunded the same way. A return's refund and staff's refund by line
    (flows.admin) both count with it."""
    amount = value
    if order.subtotal_amount > 0 and order.tax_amount > 0:
        amount += (order.tax_amount * (value_before + value)) // order.subtotal_amount - (
            order.tax_amount * value_before
        ) // order.subtotal_amount
    return amount


def return_refund_amount(*, order: Order, return_request: Return) -> int:
    """What the return refunds: its units at their unit prices, their share of the
    order's tax, and the shipping with the return that brings back the order's last unit.

    The tax share is the difference of cumulative shares over the order's refunded
    returns (floor of tax x value returned / subtotal), so the shares of all the returns
    of an order add up to exactly its tax, whatever the rounding of each.
    """
    this_lines = list(return_request.lines.select_related("order_line"))
    earlier_lines = list(
        ReturnLine.objects.select_related("order_line").filter(
            return_request__order=order, return_request__status=ReturnStatus.REFUNDED
        )
    )
    units, value = _value(this_lines)
    units_before, value_before = _value(earlier_lines)
    amount = units_refund_amount(order=order, value=value, value_before=value_before)
    order_units = sum(order.lines.values_list("quantity", flat=True))
    if units_before + units == order_units:
        amount += order.shipping_amount
    return amount


def order_units_all_returned(*, order: Order) -> bool:
    """Whether every unit of the order is in a refunded return."""
    refunded_units = sum(
        ReturnLine.objects.filter(
            return_request__order=order, return_request__status=ReturnStatus.REFUNDED
        ).values_list("quantity", flat=True)
    )
    return refunded_units == sum(order.lines.values_list("quantity", flat=True))
