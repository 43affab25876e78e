"""Route an order: every warehouse holding part of it accepted its fulfilment request.
The only module that takes `route`.

One transaction, the order locked. Called by the routing use case (flows.routing) once
the warehouses accepted, by flows.ship when staff ship a confirmed order by hand, and
by staff for warehouses operated by hand.
"""

import uuid
from collections import defaultdict
from typing import Any

from django.db import transaction

from core.actors import Actor
from flows.lock_objects import order_lock
from fulfilment.models import FulfilmentRequest
from inventory.models import Reservation
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus


def order_route_locked(*, order: Order, actor: Actor, reason: str) -> None:
    order_transition_locked(order=order, transition="route", actor=actor, reason=reason)


def order_route_manual(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Staff: route the order by hand (warehouses without a fulfilment service)."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_route_locked(order=order, actor=actor, reason=reason)
    return order


def held_lines_by_warehouse(order: Order) -> dict[int, list[dict[str, Any]]]:
    held = Reservation.objects.filter(
        order_line__order=order, status=Reservation.Status.HELD
    ).order_by("stock_item__warehouse_id", "order_line_id")
    lines: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for reservation in held.values(
        "stock_item__warehouse_id", "order_line__sku", "order_line__name", "quantity"
    ):
        # A line may hold several reservations at one warehouse (stock buckets, units
        # allocated to a backorder claim by later receipts): the warehouse gets it once.
        by_sku = lines[reservation["stock_item__warehouse_id"]]
        line = by_sku.setdefault(
            reservation["order_line__sku"],
            {
                "sku": reservation["order_line__sku"],
                "name": reservation["order_line__name"],
                "quantity": 0,
            },
        )
        line["quantity"] += reservation["quantity"]
    return {warehouse_id: list(by_sku.values()) for warehouse_id, by_sku in lines.items()}


def order_route_if_accepted(*, order_id: uuid.UUID | str, actor: Actor) -> None:
    """Route the order once every warehouse holding part of it has accepted."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if order.status != OrderStatus.CONFIRMED:
            return
        holding = set(held_lines_by_warehouse(order))
        accepted = set(
            FulfilmentRequest.objects.filter(
                order=order, status=FulfilmentRequest.Status.ACCEPTED
            ).values_list("warehouse_id", flat=True)
        )
        if holding and holding <= accepted:
            order_route_locked(order=order, actor=actor, reason="warehouses accepted")
