"""The audit trail: one row per order state change, and the outbox messages it publishes."""

from django.utils import timezone

from core.actors import Actor
from core.outbox import outbox_publish
from orders.models import Order, OrderStatusChange


def order_status_change_record(
    *,
    order: Order,
    from_status: str,
    transition: str,
    actor: Actor,
    reason: str = "",
) -> OrderStatusChange:
    change = OrderStatusChange.objects.create(
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
    # The work this change triggers (emails, routing, voids) commits with it.
    outbox_publish(
        topic=f"order.{order.status}",
        payload={
            "order_id": str(order.pk),
            "order_number": order.number,
            "from_status": from_status,
            "to_status": order.status,
            "transition": transition,
            "status_change_id": change.pk,
        },
        key=f"order-status-change-{change.pk}",
    )
    return change
