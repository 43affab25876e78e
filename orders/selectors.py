import re
import uuid
from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django_fsm import can_proceed

from core.actors import Actor
from core.errors import NotFound
from orders.models import Order, OrderEvent, OrderStatusChange, Return
from orders.states import CUSTOMER_TRANSITIONS, TRANSITIONS


def _orders_visible_to(actor: Actor) -> QuerySet[Order]:
    """Orders the actor may see: staff all, a customer their own."""
    orders = Order.objects.order_by("-created_at", "-id")
    if actor.is_staff:
        return orders
    if actor.user is None:
        return orders.none()
    return orders.filter(customer=actor.user)


def order_list_for(*, actor: Actor) -> QuerySet[Order]:
    """Orders the actor may see, newest first, with their lines and payments (one
    statement each per page, whatever its size)."""
    return _orders_visible_to(actor).prefetch_related("lines", "payments")


def order_get_for(*, actor: Actor, order_id: uuid.UUID | str) -> Order:
    """The order if the actor may see it. One statement: its lines and payments load
    when read (one statement each, as a prefetch would cost), and not at all when a
    caller only checks visibility."""
    try:
        order = _orders_visible_to(actor).filter(pk=order_id).first()
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


_CURSOR = re.compile(r"^(\d{1,19})-(\d{1,19})$")
# The oldest transaction still running: every transaction with a lower id has ended, so
# nothing can commit behind this horizon any more.
_COMMITTED_HORIZON = RawSQL("pg_snapshot_xmin(pg_current_snapshot())::text::bigint", [])


@dataclass(frozen=True)
class FeedCursor:
    """A position in the event feed: after the event written by transaction `txid` at
    `position`."""

    txid: int
    position: int

    def __str__(self) -> str:
        return f"{self.txid}-{self.position}"

    @classmethod
    def parse(cls, text: str) -> "FeedCursor | None":
        match = _CURSOR.match(text)
        if match is None:
            return None
        txid, position = int(match[1]), int(match[2])
        if txid >= 2**63 or position >= 2**63:
            return None
        return cls(txid, position)

    @classmethod
    def of(cls, event: OrderEvent) -> "FeedCursor":
        return cls(event.txid, event.position)


def order_events_feed(
    *, after: FeedCursor | None, types: list[str] | None, limit: int
) -> list[OrderEvent]:
    """Events after the cursor in commit order, oldest first: only from transactions
    older than every one still running, so an event whose transaction commits late is
    read after, never skipped. At most `limit`."""
    events = OrderEvent.objects.filter(txid__lt=_COMMITTED_HORIZON)
    if after is not None:
        events = events.filter(
            Q(txid__gt=after.txid) | Q(txid=after.txid, position__gt=after.position)
        )
    if types:
        events = events.filter(type__in=types)
    return list(events.order_by("txid", "position")[:limit])


def order_events_of(*, order: Order, after_sequence: int, limit: int) -> list[OrderEvent]:
    """The order's own events by sequence (its log as written: a reader of one order
    needs no commit horizon, the order row serializes its writers)."""
    return list(
        OrderEvent.objects.filter(order=order, sequence__gt=after_sequence).order_by("sequence")[
            :limit
        ]
    )


def order_returns(*, order: Order) -> QuerySet[Return]:
    return (
        order.returns.select_related("warehouse")
        .prefetch_related("lines__order_line")
        .order_by("created_at", "id")
    )


def order_return_get(*, order: Order, return_id: uuid.UUID | str) -> Return:
    try:
        found = order_returns(order=order).filter(pk=return_id).first()
    except (ValueError, TypeError):
        found = None
    if found is None:
        raise NotFound("No such return.")
    return found
