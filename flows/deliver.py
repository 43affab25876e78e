"""Deliver an order: it reached the customer. The only module that takes `deliver`.

One transaction, the order locked. Called when the last shipment is reported
delivered (flows.warehouse_reports), when a capture ships an order whose deliveries
were reported first (flows.ship), and by staff for warehouses operated by hand.
"""

import uuid

from django.db import transaction

from core.actors import Actor
from flows.lock_objects import order_lock
from fulfilment.services import shipments_all_delivered
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus


def order_deliver_if_complete_locked(*, order: Order, actor: Actor) -> None:
    """Deliver a shipped order once every shipment of it was delivered."""
    if order.status == OrderStatus.SHIPPED and shipments_all_delivered(order_id=order.pk):
        order_transition_locked(
            order=order, transition="deliver", actor=actor, reason="warehouse delivered"
        )


def order_deliver(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Staff: the order reached the customer (a warehouse operated by hand)."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_transition_locked(order=order, transition="deliver", actor=actor, reason=reason)
    return order
