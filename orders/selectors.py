import uuid

from django.db.models import QuerySet
from django_fsm import can_proceed

from core.actors import Actor
from core.errors import NotFound
from orders.models import Order, OrderStatusChange
from orders.states import CUSTOMER_TRANSITIONS, TRANSITIONS


def order_list_for(*, actor: Actor) -> QuerySet[Order]:
    """Orders the actor may see: staff all, a customer their own."""
    orders = Order.objects.prefetch_related("lines", "payments").order_by("-created_at", "-id")
    if actor.is_staff:
        return orders
    if actor.user is None:
        return orders.none()
    return orders.filter(customer=actor.user)


def order_get_for(*, actor: Actor, order_id: uuid.UUID | str) -> Order:
    try:
        order = order_list_for(actor=actor).filter(pk=order_id).first()
    except (ValueError, TypeError):
        order = None
    if order is None:
        raise NotFound("No such order.")
    return order


def order_history(*, order: Order) -> QuerySet[OrderStatusChange]:
    return order.status_changes.select_related("actor").order_by("created_at", "id")


def order_allowed_transitions(*, order: Order, actor: Actor) -> list[str]:
    """Transitions the actor could take now, in a stable order."""
    names = TRANSITIONS if actor.is_staff else CUSTOMER_TRANSITIONS
    return [name for name in TRANSITIONS if name in names and can_proceed(getattr(order, name))]


def order_get_status(*, order_id: uuid.UUID | str) -> str:
    status = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
    if status is None:
        raise NotFound("No such order.")
    return status
