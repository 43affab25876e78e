"""What an order change leaves behind, in the change's transaction: the audit row (who
did what), the event in the order event log, and the outbox messages it publishes."""

import json
import uuid
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from core.actors import Actor
from core.outbox import outbox_publish, outbox_rows
from orders.models import Order, OrderStatusChange
from orders.selectors import OrderRow

# The outbox topic of each recorded event: "order_event." + its type.
ORDER_EVENT_TOPIC_PREFIX = "order_event."
# The PostgreSQL channel told of every event at its commit (payload: the order id). A
# wake-up only: readers read the log itself, so a notification lost costs nothing.
ORDER_EVENTS_CHANNEL = "oms_order_events"

# One statement: the next sequence of the order (its row is locked by the caller, so
# no other transaction writes one meanwhile), the writing transaction's id, and the
# notification, which PostgreSQL delivers when (and only if) the transaction commits.
_EVENT_INSERT_SQL = f"""
WITH written AS (
    INSERT INTO orders_orderevent
        (id, order_id, sequence, type, occurred_at, api_version, data, txid)
    SELECT %s, %s, COALESCE(MAX(sequence), 0) + 1, %s, %s, %s, %s::jsonb,
           pg_current_xact_id()::text::bigint
    FROM orders_orderevent WHERE order_id = %s
    RETURNING order_id
)
SELECT pg_notify('{ORDER_EVENTS_CHANNEL}', order_id::text) FROM written
"""  # noqa: S608 (a constant channel name, no input)


def order_summary(order: Order | OrderRow) -> dict[str, Any]:
    """The order's own fields as the API names them (lines and payment are read from the
    order itself), for event payloads."""
    return {
        "id": str(order.pk),
        "number": order.number,
        "status": order.status,
        "currency": order.currency,
        "subtotal": order.subtotal_amount,
        "shipping": order.shipping_amount,
        "tax": order.tax_amount,
        "total": order.total_amount,
        "email": order.email,
        "reservation_expires_at": order.reservation_expires_at,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def order_event_row(
    *, order: Order | OrderRow, type: str, change: dict[str, Any]
) -> dict[str, Any]:
    """The event `order_event_record` would append, as JSON-ready columns (its data with
    the datetimes DjangoJSONEncoder encodes), for a caller that writes it in its own
    statement as _EVENT_INSERT_SQL does (flows.checkout_sql)."""
    return {
        "id": str(uuid.uuid4()),
        "type": type,
        "occurred_at": timezone.now().isoformat(),
        "api_version": settings.ORDER_EVENTS_API_VERSION,
        "data": {"order": order_summary(order), "change": change},
    }


def order_event_messages(*, event: dict[str, Any], order_id: uuid.UUID) -> list[dict[str, Any]]:
    """The outbox messages `order_event_record` publishes for an event (a row from
    `order_event_row`), as JSON-ready columns (core.outbox.outbox_rows)."""
    return outbox_rows(
        **_event_delivery(event_id=event["id"], order_id=order_id, type=event["type"])
    )


def _event_delivery(*, event_id: Any, order_id: Any, type: str) -> dict[str, Any]:
    """The outbox topic, payload and key of an event's delivery to subscribers."""
    return {
        "topic": ORDER_EVENT_TOPIC_PREFIX + type,
        "payload": {"event_id": str(event_id), "order_id": str(order_id), "type": type},
        "key": f"order-event-{event_id}",
    }


def order_event_record(*, order: Order, type: str, change: dict[str, Any]) -> None:
    """Append an event to the order's log. Call inside the change's transaction with the
    order row locked (or just created)."""
    data = {"order": order_summary(order), "change": change}
    event_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            _EVENT_INSERT_SQL,
            [
                event_id,
                order.pk,
                type,
                timezone.now(),
                settings.ORDER_EVENTS_API_VERSION,
                json.dumps(data, cls=DjangoJSONEncoder),
                order.pk,
            ],
        )
    # Delivery to subscribers (events app) commits with the event.
    outbox_publish(**_event_delivery(event_id=event_id, order_id=order.pk, type=type))


def _status_change_event(
    *, order: Order, from_status: str, transition: str, reason: str
) -> dict[str, Any]:
    """The type and change of the event a status change appends (reason already cut)."""
    return {
        "type": "order.created" if not from_status else f"order.{order.status}",
        "change": {
            "from_status": from_status,
            "to_status": order.status,
            "transition": transition,
            "reason": reason,
        },
    }


def _status_work_payload(*, order: Order, from_status: str, transition: str) -> dict[str, Any]:
    """The payload of the new status's work (emails, routing, voids), without the audit
    row's id."""
    return {
        "order_id": str(order.pk),
        "order_number": order.number,
        "from_status": from_status,
        "to_status": order.status,
        "transition": transition,
    }


def order_status_change_rows(
    *,
    order: Order,
    from_status: str,
    transition: str,
    actor: Actor,
    reason: str = "",
) -> dict[str, Any]:
    """What `order_status_change_record` writes for a change taken on `order` (its
    status now the target), as JSON-ready columns for a caller that writes them in its
    own statement (flows.outcome_sql): the audit row ("change"), the event ("event", as
    `order_event_row`) and the outbox messages ("outbox": the event's delivery, then the
    new status's work). The audit row's id is not known yet: a message that names it
    has "names_change" set, a payload without `status_change_id` and a dedup key
    without the id, which the statement appends."""
    reason = reason[:500]
    event = order_event_row(
        order=order,
        **_status_change_event(
            order=order, from_status=from_status, transition=transition, reason=reason
        ),
    )
    status_work = outbox_rows(
        topic=f"order.{order.status}",
        payload=_status_work_payload(order=order, from_status=from_status, transition=transition),
        key="order-status-change-",
    )
    return {
        "change": {
            "from_status": from_status,
            "to_status": order.status,
            "transition": transition,
            "actor_id": actor.user.pk if actor.user is not None else None,
            "actor_label": actor.label,
            "reason": reason,
            "request_id": actor.request_id,
        },
        "event": event,
        "outbox": [
            *order_event_messages(event=event, order_id=order.pk),
            *({**message, "names_change": True} for message in status_work),
        ],
    }


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
    order_event_record(
        order=order,
        **_status_change_event(
            order=order, from_status=from_status, transition=transition, reason=reason[:500]
        ),
    )
    # The work this change triggers (emails, routing, voids) commits with it.
    outbox_publish(
        topic=f"order.{order.status}",
        payload={
            **_status_work_payload(order=order, from_status=from_status, transition=transition),
            "status_change_id": change.pk,
        },
        key=f"order-status-change-{change.pk}",
    )
    return change
