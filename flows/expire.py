"""Expire unpaid orders whose stock hold ran out. The only module that takes `expire`.

One transaction per order: lock it, expire it, release its stock; then void whatever it
still had authorized (flows.void), best effort: the outbox message written with the
expiry retries until it is voided. The scheduled task, the management command and
staff all come here.
"""

import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.errors import ConcurrentUpdate, NotFound
from flows.lock_objects import order_lock
from flows.void import order_payments_void
from inventory.services import reservations_release
from orders.errors import InvalidTransition
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus


def order_expire(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Expire one unpaid order and release its stock."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_transition_locked(order=order, transition="expire", actor=actor, reason=reason)
        reservations_release(
            order_line_ids=order.lines.values_list("pk", flat=True),
            actor=actor,
            reason=reason or f"order {order.number} expired",
        )
    order_payments_void(order_id=order.pk, actor=actor)
    return order


def orders_expire_overdue(*, now: datetime | None = None, actor: Actor | None = None) -> int:
    """Expire unpaid orders whose reservation ran out; release their stock.

    Safe to run again and concurrently: an order already moved on is skipped.
    Return how many orders this run expired.
    """
    now = now or timezone.now()
    actor = actor or Actor.system()
    overdue = list(
        Order.objects.filter(
            status__in=[OrderStatus.PENDING_PAYMENT, OrderStatus.PAYMENT_FAILED],
            reservation_expires_at__lte=now,
        ).values_list("pk", flat=True)
    )
    expired = 0
    for order_id in overdue:
        try:
            order_expire(order_id=order_id, actor=actor, reason="reservation expired")
        except (InvalidTransition, ConcurrentUpdate, NotFound):
            continue
        expired += 1
    return expired
