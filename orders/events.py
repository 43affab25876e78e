"""Audit rows for order state changes."""

from django.utils import timezone

from core.actors import Actor
from orders.models import Order, OrderStatusChange


def order_status_change_record(
    *,
    order: Order,
    from_status: str,
    transition: str,
    actor: Actor,
    reason: str = "",
) -> OrderStatusChange:
    return OrderStatusChange.objects.create(
        order=order,
        from_status=from_status,
        to_status=order.status,
        transition=transition,
        actor=actor.user,
        actor_label=actor.label,
        reason=reason[:500],
        request_id=actor.request_id,
        created_at=timezone.now(),
    )
