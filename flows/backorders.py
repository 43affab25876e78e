"""Backordered orders: wait for stock, then go on. The only module that takes
`stock_arrive` (payment_outcomes takes `await_stock` when a paid order still has units
on backorder).

A receipt (inventory.services.stock_adjust, a return's restock) turns the oldest open
claims into reservations in its own transaction and publishes `stock.received`; its
consumer here runs one more allocation pass for the product (claims the receipt's
transaction could not see yet), then, one transaction per order with the order locked,
moves each awaiting_stock order whose claims are all covered to confirmed: the outbox
then routes it as any confirmed order and emails the customer that the backordered
items are in stock. Running it again changes nothing.
"""

import uuid
from collections.abc import Iterable

from django.db import transaction

from core.actors import Actor
from flows.lock_objects import order_lock
from inventory.backorders import backorders_allocate_locked
from inventory.selectors import order_backordered_units
from orders.services import order_transition_locked
from orders.states import OrderStatus


def order_stock_arrive(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> bool:
    """Confirm an awaiting_stock order whose backordered units are all reserved now.
    Return whether it moved (False: not awaiting stock, or still waiting)."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if order.status != OrderStatus.AWAITING_STOCK:
            return False
        if order_backordered_units(order_id=order.pk):
            return False
        order_transition_locked(
            order=order,
            transition="stock_arrive",
            actor=actor,
            reason=reason or "backordered units in stock",
        )
    return True


def backorders_allocate(
    *, product_id: int, warehouse_id: int, order_ids: Iterable[str], actor: Actor
) -> list[str]:
    """After a receipt of the product at the warehouse: allocate what is still
    unreserved there to open claims, oldest first, then move on the orders whose claims
    are all covered. Return the ids of the orders confirmed."""
    with transaction.atomic():
        allocation = backorders_allocate_locked(
            product_id=product_id,
            warehouse_id=warehouse_id,
            actor=actor,
            reason="backorder allocation after a receipt",
        )
    confirmed = []
    for order_id in dict.fromkeys([*order_ids, *allocation.order_ids]):
        if order_stock_arrive(order_id=order_id, actor=actor):
            confirmed.append(order_id)
    return confirmed
