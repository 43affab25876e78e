"""Outbox handlers: routing after confirmation, capture and shipping after pickup."""

from typing import Any

from django.db import transaction

from core.actors import Actor
from core.outbox import outbox_handler
from fulfilment.models import Shipment
from fulfilment.services import order_route
from orders.models import Order
from orders.services import order_lock, order_transition, order_transition_locked
from orders.states import OrderStatus
from payments.models import Payment
from payments.services import order_ship


@outbox_handler("order.confirmed", name="fulfilment.route_order", queue="routing")
def route_order(payload: dict[str, Any]) -> None:
    order_route(order_id=payload["order_id"])


@outbox_handler("shipment.shipped", name="fulfilment.ship_order", queue="payments")
def ship_order(payload: dict[str, Any]) -> None:
    """Once every shipment of the order left its warehouse: capture, then ship."""
    order_id = payload["order_id"]
    order = Order.objects.get(pk=order_id)
    if order.shipments.exclude(
        status__in=[Shipment.Status.SHIPPED, Shipment.Status.DELIVERED]
    ).exists():
        return
    actor = Actor.system()
    if order.status == OrderStatus.ROUTED:
        if Payment.objects.filter(order_id=order_id, status=Payment.Status.AUTHORIZED).exists():
            order_ship(order_id=order_id, actor=actor)  # provider down: raises, task retries
        else:
            order_transition(
                order_id=order_id, transition="ship", actor=actor, reason="warehouse shipped"
            )
    # Deliveries reported while the capture was pending (or done by a webhook) count now.
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        all_delivered = not order.shipments.exclude(status=Shipment.Status.DELIVERED).exists()
        if all_delivered and order.status == OrderStatus.SHIPPED:
            order_transition_locked(
                order=order, transition="deliver", actor=actor, reason="warehouse delivered"
            )
