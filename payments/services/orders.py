"""Order use cases that move money: cancel and expire with their voids."""

import uuid
from datetime import datetime

from django.utils import timezone

from core.actors import Actor
from orders.models import Order
from orders.services import order_cancel, order_transition, orders_expire_overdue
from payments.models import Payment
from payments.services.capture import order_ship
from payments.services.refunds import order_refund
from payments.services.voids import payments_void_for_order


def order_cancel_and_void(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Cancel the order (releasing its stock), then void its authorization.

    A void that fails is left for the reconciler: the order is cancelled either way and
    no money is ever taken for it.
    """
    order = order_cancel(order_id=order_id, actor=actor, reason=reason)
    payments_void_for_order(order_id=order.pk, actor=actor)
    return order


def orders_expire_and_void(*, now: datetime | None = None, actor: Actor | None = None) -> int:
    """Expire overdue unpaid orders, then void what they still had authorized."""
    actor = actor or Actor.system()
    now = now or timezone.now()
    expired = orders_expire_overdue(now=now, actor=actor)
    stray = Order.objects.filter(
        status="expired", payments__status__in=["authorized", "requires_action"]
    ).values_list("pk", flat=True)
    for order_id in list(stray):
        payments_void_for_order(order_id=order_id, actor=actor)
    return expired


def order_transition_with_payments(
    *, order_id: uuid.UUID | str, transition: str, actor: Actor, reason: str = ""
) -> Order:
    """Staff take a named transition; those that move money go through the payments.

    ship captures an authorized payment; refund refunds all that is left of a captured
    one; cancel and expire void what is authorized. An order without a payment (paid
    offline and confirmed by staff) takes the plain transition.
    """
    payments = Payment.objects.filter(order_id=order_id)
    if transition == "ship" and payments.filter(status=Payment.Status.AUTHORIZED).exists():
        return order_ship(order_id=order_id, actor=actor)
    if transition == "refund" and payments.filter(status=Payment.Status.CAPTURED).exists():
        return order_refund(order_id=order_id, amount=None, actor=actor)
    if transition == "cancel":
        return order_cancel_and_void(order_id=order_id, actor=actor, reason=reason)
    order = order_transition(order_id=order_id, transition=transition, actor=actor, reason=reason)
    if transition == "expire":
        payments_void_for_order(order_id=order_id, actor=actor)
    return order
