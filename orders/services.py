"""Writes that belong to orders alone: create an order, take one transition.

The order use cases (flows) call these inside their transactions; nothing here talks
to stock, payments or warehouses.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django_fsm import ConcurrentTransition, can_proceed

from core.actors import Actor
from core.errors import ConcurrentUpdate
from orders.audit import order_status_change_record
from orders.errors import InvalidTransition
from orders.metrics import ORDER_TRANSITIONS
from orders.models import Order, OrderLine
from orders.states import TRANSITIONS


@dataclass(frozen=True)
class OrderLineData:
    """A line as bought: the product's price and name at checkout."""

    product_id: int
    sku: str
    name: str
    unit_price: int
    quantity: int
    tax_amount: int = 0


def order_amounts(
    *,
    line_totals: Iterable[int],
    line_taxes: Iterable[int],
    shipping_amount: int,
    shipping_tax_amount: int,
) -> tuple[int, int, int]:
    """An order's (subtotal, tax, total): its tax is its lines' taxes plus the shipping's
    tax; its total, subtotal + shipping + tax."""
    subtotal = sum(line_totals)
    tax = sum(line_taxes) + shipping_tax_amount
    return subtotal, tax, subtotal + shipping_amount + tax


def order_create(
    *,
    customer: User,
    email: str,
    shipping_address: dict[str, Any],
    currency: str,
    lines: Sequence[OrderLineData],
    reservation_expires_at: datetime,
    actor: Actor,
    shipping_method: str = "standard",
    shipping_amount: int = 0,
    shipping_tax_amount: int = 0,
) -> tuple[Order, list[OrderLine]]:
    """Insert a pending_payment order, its lines and its first audit row, with the
    amounts `order_amounts` gives."""
    subtotal, tax, total = order_amounts(
        line_totals=[line.unit_price * line.quantity for line in lines],
        line_taxes=[line.tax_amount for line in lines],
        shipping_amount=shipping_amount,
        shipping_tax_amount=shipping_tax_amount,
    )
    order = Order.objects.create(
        customer=customer,
        email=email,
        shipping_address=shipping_address,
        currency=currency,
        subtotal_amount=subtotal,
        shipping_method=shipping_method,
        shipping_amount=shipping_amount,
        tax_amount=tax,
        total_amount=total,
        reservation_expires_at=reservation_expires_at,
    )
    order_lines = OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product_id=line.product_id,
            sku=line.sku,
            name=line.name,
            unit_price=line.unit_price,
            quantity=line.quantity,
            line_total=line.unit_price * line.quantity,
            tax_amount=line.tax_amount,
        )
        for line in lines
    )
    order_status_change_record(order=order, from_status="", transition="place", actor=actor)
    # Rendering the new order reads nothing back: its lines are these, it has no payment.
    _related_rows_known(order, lines=order_lines, payments=[])
    return order, order_lines


def _related_rows_known(instance: Order, **related: Sequence[Any]) -> None:
    """Fill the instance's prefetch cache with related rows this code just wrote, as
    prefetch_related_objects would after reading them."""
    cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    for name, rows in related.items():
        queryset = getattr(instance, name).get_queryset()
        queryset._result_cache = list(rows)
        queryset._prefetch_done = True
        cache[name] = queryset


@dataclass(frozen=True)
class PlannedTransition:
    """A transition taken on a locked order in memory, to be written by the caller."""

    transition: str
    from_status: str
    to_status: str


def order_transition_planned(*, order: Order, transition: str, now: datetime) -> PlannedTransition:
    """Take a transition on an order the caller has locked, in memory only, for a caller
    that writes the change itself, set-based, in its transaction: the state machine
    guards it and sets the target status as in `order_transition_locked`; the caller
    writes the status and `updated_at` (now) with the source status in its WHERE, and
    the audit row, event and outbox messages of `orders.audit.order_status_change_rows`.

    Raise InvalidTransition as `order_transition_locked` does.
    """
    if transition not in TRANSITIONS:
        raise InvalidTransition(transition=transition, current_status=order.status)
    method = getattr(order, transition)
    if not can_proceed(method):
        raise InvalidTransition(transition=transition, current_status=order.status)
    from_status = order.status
    method()
    order.updated_at = now
    to_status = order.status
    # Counted once the transition is committed: a rolled-back one never happened.
    transaction.on_commit(
        lambda: ORDER_TRANSITIONS.labels(from_status=from_status, to_status=to_status).inc()
    )
    return PlannedTransition(transition=transition, from_status=from_status, to_status=to_status)


def order_transition_locked(
    *, order: Order, transition: str, actor: Actor, reason: str = ""
) -> None:
    """Take a transition on an order the caller has locked, inside its transaction: the
    state machine guards it, and the audit row and outbox messages are written with it.

    Raise InvalidTransition when the machine does not allow it from the current status.
    Only the order use case that owns a transition calls this for it (see
    docs/architecture.md).
    """
    if transition not in TRANSITIONS:
        raise InvalidTransition(transition=transition, current_status=order.status)
    method = getattr(order, transition)
    if not can_proceed(method):
        why = ""
        if can_proceed(method, check_conditions=False):
            # The only guarded transition: retry_payment needs the stock still held.
            why = f"its reservation expired at {order.reservation_expires_at.isoformat()}"
        raise InvalidTransition(transition=transition, current_status=order.status, why=why)
    from_status = order.status
    method()
    try:
        order.save(update_fields=["status", "updated_at"])
    except ConcurrentTransition as error:
        raise ConcurrentUpdate() from error
    order_status_change_record(
        order=order,
        from_status=from_status,
        transition=transition,
        actor=actor,
        reason=reason,
    )
    to_status = order.status
    # Counted once the transition is committed: a rolled-back one never happened.
    transaction.on_commit(
        lambda: ORDER_TRANSITIONS.labels(from_status=from_status, to_status=to_status).inc()
    )
