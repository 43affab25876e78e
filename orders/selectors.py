import operator
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from django.db import connections, router
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django_fsm import can_proceed

from core.actors import Actor
from core.errors import NotFound
from orders.models import Order, OrderEdit, OrderEvent, OrderLine, OrderStatusChange, Return
from orders.states import CUSTOMER_TRANSITIONS, TRANSITIONS


def _orders_visible_to(actor: Actor) -> QuerySet[Order]:
    """Orders the actor may see: staff all, a customer their own."""
    orders = Order.objects.order_by("-created_at", "-id")
    if actor.is_staff:
        return orders
    if actor.user is None:
        return orders.none()
    return orders.filter(customer=actor.user)


# Where orders_related_load puts each order's lines and payments: plain lists, which
# cost far less to fill than a related manager's queryset per order (prefetch_related).
LOADED_LINES = "loaded_lines"
LOADED_PAYMENTS = "loaded_payments"


@dataclass(frozen=True, slots=True)
class OrderLineRow:
    """An order line as rendered: a plain row, not a model instance (a page of orders
    has a hundred or more; instances cost ~40 Python calls each to build)."""

    sku: str
    name: str
    quantity: int
    unit_price: int
    line_total: int
    tax_amount: int


def order_list_for(*, actor: Actor) -> QuerySet[Order]:
    """Orders the actor may see, newest first. Pass the page to `orders_related_load`
    for its lines and payments."""
    return _orders_visible_to(actor)


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """A payment as an order's rendering reads it: a plain row."""

    pk: int
    status: str
    amount: int
    amount_captured: int
    amount_refunded: int
    currency: str
    decline_code: str
    client_secret: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An order as a page of orders renders it: a plain row with its lines and payments,
    not a model instance (an Order costs ~100 Python calls to build, most of them
    django-fsm's per-instance set-up, and a page has 50 or more). Its attributes are the
    Order's that the order representation reads."""

    pk: uuid.UUID
    number: str
    status: str
    subtotal_amount: int
    shipping_amount: int
    tax_amount: int
    total_amount: int
    currency: str
    email: str
    shipping_method: str
    shipping_address: dict[str, Any]
    reservation_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    lines: list[OrderLineRow]
    payments: list[PaymentRow]


# The columns of an OrderRow, in its field order ("id" is its pk).
ORDER_ROW_FIELDS = (
    "id",
    "number",
    "status",
    "subtotal_amount",
    "shipping_amount",
    "tax_amount",
    "total_amount",
    "currency",
    "email",
    "shipping_method",
    "shipping_address",
    "reservation_expires_at",
    "created_at",
    "updated_at",
)
_ORDER_ROW_VALUES = operator.itemgetter(*ORDER_ROW_FIELDS)
_PAYMENT_ROW_FIELDS = (
    "order_id",
    "id",
    "status",
    "amount",
    "amount_captured",
    "amount_refunded",
    "currency",
    "decline_code",
    "client_secret",
    "created_at",
)


def order_list_rows_for(*, actor: Actor) -> QuerySet[Order, dict[str, Any]]:
    """The orders the actor may see, newest first, as dicts of ORDER_ROW_FIELDS (what a
    cursor paginator reads positions from). Pass the page to `order_rows_load`."""
    return _orders_visible_to(actor).values(*ORDER_ROW_FIELDS)


def _lines_of(ids: list[uuid.UUID]) -> dict[uuid.UUID, list[OrderLineRow]]:
    lines: dict[uuid.UUID, list[OrderLineRow]] = {pk: [] for pk in ids}
    rows = (
        OrderLine.objects.filter(order_id__in=ids)
        .order_by("id")
        .values_list(
            "order_id", "sku", "name", "quantity", "unit_price", "line_total", "tax_amount"
        )
    )
    for order_id, sku, name, quantity, unit_price, line_total, tax_amount in rows:
        lines[order_id].append(
            OrderLineRow(sku, name, quantity, unit_price, line_total, tax_amount)
        )
    return lines


def _payment_model() -> Any:
    return Order._meta.get_field("payments").related_model


def order_rows_load(rows: list[dict[str, Any]]) -> list[OrderRow]:
    """The page's orders (dicts from `order_list_rows_for`) as OrderRows with their
    lines and payments: two statements, whatever the number of orders."""
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    lines = _lines_of(ids)
    payments: dict[uuid.UUID, list[PaymentRow]] = {pk: [] for pk in ids}
    for order_id, *payment in (
        _payment_model()._default_manager.filter(order_id__in=ids).values_list(*_PAYMENT_ROW_FIELDS)
    ):
        payments[order_id].append(PaymentRow(*payment))
    return [
        OrderRow(*_ORDER_ROW_VALUES(row), lines[row["id"]], payments[row["id"]])  # type: ignore[call-arg]
        for row in rows
    ]


def orders_related_load(orders: list[Order]) -> None:
    """Load the orders' lines (as rows) and payments: one statement each, whatever the
    number of orders; read back with `order_lines(order)` and `order_payments(order)`."""
    if not orders:
        return
    ids = [order.pk for order in orders]
    lines = _lines_of(ids)
    payments: dict[uuid.UUID, list[Any]] = {pk: [] for pk in ids}
    for payment in _payment_model()._default_manager.filter(order_id__in=ids):
        payments[payment.order_id].append(payment)
    for order in orders:
        order.__dict__[LOADED_LINES] = lines[order.pk]
        order.__dict__[LOADED_PAYMENTS] = payments[order.pk]


def order_lines(order: Order | OrderRow) -> list[Any]:
    """The order's lines: as order_rows_load or orders_related_load loaded them, else
    from its related manager (prefetched, or read now)."""
    if isinstance(order, OrderRow):
        return order.lines
    loaded = order.__dict__.get(LOADED_LINES)
    return loaded if loaded is not None else list(order.lines.all())


def order_payments(order: Order | OrderRow) -> list[Any]:
    """The order's payments, likewise."""
    if isinstance(order, OrderRow):
        return order.payments
    loaded = order.__dict__.get(LOADED_PAYMENTS)
    return loaded if loaded is not None else list(order.payments.all())


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


def order_detail_for(*, actor: Actor, order_id: uuid.UUID | str) -> Order:
    """The order if the actor may see it, with its lines and payments (three statements,
    whatever their number)."""
    try:
        order = order_list_for(actor=actor).filter(pk=order_id).first()
    except (ValueError, TypeError):
        order = None
    if order is None:
        raise NotFound("No such order.")
    orders_related_load([order])
    return order


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class OrderVersion:
    """What changes whenever the order's rendering can: the order row and its payments
    (every write of either goes through save(), which sets updated_at; lines never
    change once placed). Same value from a loaded order and from `order_version_for`."""

    updated_at: datetime
    payments_updated_at: datetime | None
    payments: int

    @classmethod
    def of(cls, order: Order) -> "OrderVersion":
        """From an order whose payments are loaded (order_detail_for)."""
        payments = order_payments(order)
        return cls(
            updated_at=order.updated_at,
            payments_updated_at=max((p.updated_at for p in payments), default=None),
            payments=len(payments),
        )

    def tag_parts(self) -> tuple[int, int, int]:
        changed = self.payments_updated_at
        return (
            (self.updated_at - _EPOCH) // _MICROSECOND,
            0 if changed is None else (changed - _EPOCH) // _MICROSECOND,
            self.payments,
        )


@cache
def _version_sql(for_customer: bool) -> str:
    """The version statement, written once: building it with the ORM on every 304 cost
    more Python than the rest of the request (about 2,400 calls)."""
    payments = Order._meta.get_field("payments").related_model._meta
    order_fk = payments.get_field("order").column
    sql = (
        f"SELECT o.updated_at, max(p.updated_at), count(p.{payments.pk.column}) "  # noqa: S608 - names from the models
        f"FROM {Order._meta.db_table} o "
        f"LEFT JOIN {payments.db_table} p ON p.{order_fk} = o.id "
        "WHERE o.id = %s"
    )
    if for_customer:
        sql += f" AND o.{Order._meta.get_field('customer').column} = %s"
    return sql + " GROUP BY o.id"


def order_version_for(*, actor: Actor, order_id: uuid.UUID | str) -> OrderVersion:
    """The order's version if the actor may see it (staff any, a customer their own):
    one statement (the order's row and an aggregate over its payments' index), for a
    conditional GET. Read where the router sends Order reads (the replica when the
    request allows it)."""
    try:
        pk = order_id if isinstance(order_id, uuid.UUID) else uuid.UUID(str(order_id))
    except ValueError:
        pk = None
    row = None
    if pk is not None and (actor.is_staff or actor.user is not None):
        params: list[Any] = [pk] if actor.is_staff else [pk, actor.user.pk]  # type: ignore[union-attr]
        with connections[router.db_for_read(Order)].cursor() as cursor:
            cursor.execute(_version_sql(not actor.is_staff), params)
            row = cursor.fetchone()
    if row is None:
        raise NotFound("No such order.")
    return OrderVersion(updated_at=row[0], payments_updated_at=row[1], payments=row[2])


@cache
def _page_version_sql(for_customer: bool) -> str:
    """The first-page version statement, written once (as _version_sql): each order of
    the page as `id.xmin` followed by its payments', hashed in page order."""
    orders = Order._meta
    payments = _payment_model()._meta
    customer = f"WHERE {orders.get_field('customer').column} = %s " if for_customer else ""
    return (
        "SELECT md5(coalesce(string_agg(o.id::text || '.' || o.xmin::text || '|' || "  # noqa: S608 - names from the models
        "coalesce((SELECT string_agg(p.id::text || '.' || p.xmin::text, ',' ORDER BY p.id) "
        f"FROM {payments.db_table} p WHERE p.{payments.get_field('order').column} = o.id), ''), "
        "';' ORDER BY o.created_at DESC, o.id DESC), '')) "
        f"FROM (SELECT id, created_at, xmin FROM {orders.db_table} {customer}"
        "ORDER BY created_at DESC, id DESC LIMIT %s) o"
    )


def order_first_page_version_for(*, actor: Actor, page_size: int) -> str | None:
    """A version of the actor's first page of orders (`page_size` of them, newest
    first, unfiltered), for a conditional GET: one statement over the page's order rows
    and the one after it (whether there is a next page), and their payments. None for
    an actor who sees no orders.

    Each row contributes its `xmin`, the id of the transaction that wrote that version
    of the row: any committed write (a status change, a payment a worker records, even
    an UPDATE that bypasses save()) gives the row a new xmin, and a new order shifts the
    rows, so the version changes with every change a page can show, whatever order
    concurrent transactions commit in. (A maximum of `updated_at` would not: that is the
    writer's clock when it saved, so a transaction that commits after one with a later
    stamp is not seen.) Lines are not read (they would double the statement's cost):
    they change only in an order edit, which rewrites the order row in the same
    transaction (its totals), as OrderVersion assumes too. The caller reads the version
    before the page, on the same database: a change that commits in between gives a 200
    with newer content under an older tag, so the next conditional GET is a 200 again,
    never a 304 with content older than the tag."""
    if not actor.is_staff and actor.user is None:
        return None
    params: list[Any] = [] if actor.is_staff else [actor.user.pk]  # type: ignore[union-attr]
    with connections[router.db_for_read(Order)].cursor() as cursor:
        cursor.execute(_page_version_sql(not actor.is_staff), [*params, page_size + 1])
        row = cursor.fetchone()
    return str(row[0])


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


def order_edit_get(*, order: Order, edit_id: uuid.UUID | str) -> OrderEdit:
    found = OrderEdit.objects.filter(order=order, pk=edit_id).first()
    if found is None:
        raise NotFound("No such edit.")
    return found
