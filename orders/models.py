import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from core.models import TimeStampedModel
from orders.states import OrderStatus, ReturnStatus

_ORDER_NUMBER_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def order_number_generate() -> str:
    """A human-friendly public number such as OMS-7K2Q9-XDM3P (50 random bits)."""
    chars = "".join(secrets.choice(_ORDER_NUMBER_ALPHABET) for _ in range(10))
    return f"OMS-{chars[:5]}-{chars[5:]}"


class Order(ConcurrentTransitionMixin, TimeStampedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(max_length=32, unique=True, default=order_number_generate)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    email = models.EmailField()
    shipping_address = models.JSONField()
    currency = models.CharField(max_length=3)
    # Amounts in minor units of `currency`.
    subtotal_amount = models.BigIntegerField()
    shipping_amount = models.BigIntegerField(default=0)
    # The sum of the lines' tax_amount plus the shipping's tax (see pricing.base).
    tax_amount = models.BigIntegerField(default=0)
    total_amount = models.BigIntegerField()
    # How it ships (pricing.models.ShippingMethod), priced into shipping_amount.
    shipping_method = models.CharField(max_length=16, default="standard")
    status = FSMField(
        default=OrderStatus.PENDING_PAYMENT,
        choices=OrderStatus.choices,
        protected=True,
        db_index=True,
    )
    reservation_expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(subtotal_amount__gte=0)
                & Q(shipping_amount__gte=0)
                & Q(tax_amount__gte=0),
                name="order_amounts_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(
                    total_amount=F("subtotal_amount") + F("shipping_amount") + F("tax_amount")
                ),
                name="order_total_is_sum",
            ),
            models.CheckConstraint(
                condition=Q(status__in=OrderStatus.values), name="order_status_valid"
            ),
        ]
        # A customer's orders newest first, as the list pages them (keyset on created_at,
        # id breaking ties): a page is an index range scan whatever their number.
        indexes = [
            models.Index(fields=["customer", "-created_at", "-id"], name="order_customer_recent")
        ]

    def __str__(self) -> str:
        return self.number

    def reservation_is_live(self) -> bool:
        return self.reservation_expires_at > timezone.now()

    def _reservation_is_live(self: models.Model) -> bool:  # FSM condition signature
        return isinstance(self, Order) and self.reservation_is_live()

    # Transitions guard and change the status only; services do everything else.

    @transition(field=status, source=OrderStatus.PENDING_PAYMENT, target=OrderStatus.CONFIRMED)
    def confirm(self) -> None:
        """Payment authorized."""

    @transition(field=status, source=OrderStatus.PENDING_PAYMENT, target=OrderStatus.AWAITING_STOCK)
    def await_stock(self) -> None:
        """Payment authorized, but backordered units wait for a stock receipt."""

    @transition(field=status, source=OrderStatus.AWAITING_STOCK, target=OrderStatus.CONFIRMED)
    def stock_arrive(self) -> None:
        """Receipts covered every backordered unit: the order goes on as confirmed."""

    @transition(field=status, source=OrderStatus.PENDING_PAYMENT, target=OrderStatus.PAYMENT_FAILED)
    def fail_payment(self) -> None:
        """The payment attempt failed; the reservation stays until it expires."""

    @transition(
        field=status,
        source=OrderStatus.PAYMENT_FAILED,
        target=OrderStatus.PENDING_PAYMENT,
        conditions=[_reservation_is_live],
    )
    def retry_payment(self) -> None:
        """A new payment attempt while the stock is still held."""

    @transition(
        field=status,
        source=[OrderStatus.PENDING_PAYMENT, OrderStatus.PAYMENT_FAILED],
        target=OrderStatus.EXPIRED,
    )
    def expire(self) -> None:
        """The reservation ran out before payment."""

    @transition(
        field=status,
        source=[
            OrderStatus.PENDING_PAYMENT,
            OrderStatus.PAYMENT_FAILED,
            OrderStatus.AWAITING_STOCK,
            OrderStatus.CONFIRMED,
            OrderStatus.ROUTED,
        ],
        target=OrderStatus.CANCELLED,
    )
    def cancel(self) -> None:
        """Cancelled before shipment."""

    @transition(field=status, source=OrderStatus.CONFIRMED, target=OrderStatus.ROUTED)
    def route(self) -> None:
        """A warehouse accepted the order."""

    @transition(field=status, source=OrderStatus.ROUTED, target=OrderStatus.PARTIALLY_SHIPPED)
    def ship_partially(self) -> None:
        """Some of its units left a warehouse; others are still to ship."""

    @transition(
        field=status,
        source=[OrderStatus.ROUTED, OrderStatus.PARTIALLY_SHIPPED],
        target=OrderStatus.SHIPPED,
    )
    def ship(self) -> None:
        """The order left the warehouse (all of it, or all that was not cancelled)."""

    @transition(field=status, source=OrderStatus.SHIPPED, target=OrderStatus.DELIVERED)
    def deliver(self) -> None:
        """The order reached the customer."""

    @transition(
        field=status,
        source=[OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.PARTIALLY_RETURNED],
        target=OrderStatus.REFUNDED,
    )
    def refund(self) -> None:
        """Fully refunded."""

    @transition(
        field=status,
        source=[OrderStatus.SHIPPED, OrderStatus.DELIVERED],
        target=OrderStatus.PARTIALLY_RETURNED,
    )
    def return_partially(self) -> None:
        """A return of some of the shipped units was refunded."""

    @transition(
        field=status,
        source=[OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.PARTIALLY_RETURNED],
        target=OrderStatus.RETURNED,
    )
    def return_fully(self) -> None:
        """Returns of every shipped unit were refunded."""


class OrderLine(models.Model):
    """A snapshot of what was bought: later product changes do not alter it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(
        "inventory.Product", on_delete=models.PROTECT, related_name="order_lines"
    )
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    unit_price = models.BigIntegerField()
    quantity = models.IntegerField()
    line_total = models.BigIntegerField()
    # Tax on line_total in minor units, rounded on the line (pricing.base.tax_of).
    tax_amount = models.BigIntegerField(default=0)
    # Units in returns that are open or completed (not rejected or cancelled): raised by
    # the use case that opens a return, in its transaction, never beyond `quantity`.
    returned_quantity = models.IntegerField(default=0)
    # Units that left a warehouse: raised by each shipped report (flows.warehouse_reports),
    # or set to `quantity` when the whole order ships at once (flows.ship).
    shipped_quantity = models.IntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            # 0: a line an edit removed (flows.edit); its released reservations keep it.
            models.CheckConstraint(
                condition=Q(quantity__gte=0), name="order_line_quantity_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(returned_quantity__gte=0) & Q(returned_quantity__lte=F("quantity")),
                name="order_line_returned_within_quantity",
            ),
            models.CheckConstraint(
                condition=Q(shipped_quantity__gte=0) & Q(shipped_quantity__lte=F("quantity")),
                name="order_line_shipped_within_quantity",
            ),
            models.CheckConstraint(
                condition=Q(line_total=F("unit_price") * F("quantity")),
                name="order_line_total_is_product",
            ),
            models.CheckConstraint(condition=Q(tax_amount__gte=0), name="order_line_tax_gte_0"),
            models.UniqueConstraint(fields=["order", "sku"], name="order_line_unique_sku"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class OrderStatusChange(models.Model):
    """Audit trail: one row per transition, written in the transition's transaction."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=32, blank=True)
    to_status = models.CharField(max_length=32)
    transition = models.CharField(max_length=32)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_label = models.CharField(max_length=150)
    reason = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status or '-'} -> {self.to_status}"


class OrderEvent(models.Model):
    """The order event log: one row per change of an order, written by the use case in
    the same transaction as the change. The source of truth for the event feed.

    `sequence` counts an order's events 1, 2, 3 with no gap (the order row is locked
    while one is written). `txid` is the writing transaction's id (PostgreSQL's
    pg_current_xact_id()): the feed orders events by (txid, position) and reads only
    transactions older than every one still running, so a transaction that commits
    late is never skipped (see orders.selectors.order_events_feed).
    """

    # The order of insertion (within a transaction, the order of its events).
    position = models.BigAutoField(primary_key=True)
    id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    sequence = models.PositiveIntegerField()
    type = models.CharField(max_length=64)
    occurred_at = models.DateTimeField(default=timezone.now)
    api_version = models.CharField(max_length=16)
    data = models.JSONField()
    txid = models.BigIntegerField(editable=False)

    class Meta:
        ordering = ["txid", "position"]
        constraints = [
            models.UniqueConstraint(fields=["order", "sequence"], name="order_event_sequence")
        ]
        indexes = [
            models.Index(fields=["txid", "position"], name="order_event_feed"),
            models.Index(fields=["type", "txid", "position"], name="order_event_feed_by_type"),
            models.Index(fields=["occurred_at"], name="order_event_occurred_at"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} #{self.sequence} {self.type}"


class Return(ConcurrentTransitionMixin, TimeStampedModel):
    """A return (RMA): units of some lines of a shipped order coming back for a refund."""

    class Disposition(models.TextChoices):
        RESTOCK = "restock", "Restock"
        DISPOSE = "dispose", "Dispose"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="returns")
    status = FSMField(
        default=ReturnStatus.REQUESTED,
        choices=ReturnStatus.choices,
        protected=True,
        db_index=True,
    )
    reason = models.CharField(max_length=500)
    # Where the units came back to (set on receipt).
    warehouse = models.ForeignKey(
        "inventory.Warehouse",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="returns",
    )
    # Minor units of the order's currency: what this return refunds, set when the refund
    # is prepared (its lines, their share of tax, shipping with the last unit).
    refund_amount = models.BigIntegerField(null=True, blank=True)
    # The payments operation that refunds it (payments.PaymentOperation's id): one per
    # return, so a retry re-sends the same provider idempotency key.
    refund_operation_id = models.BigIntegerField(null=True, blank=True, unique=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ReturnStatus.values), name="return_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(refund_amount__isnull=True) | Q(refund_amount__gte=0),
                name="return_refund_amount_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"return {self.pk} of {self.order_id} ({self.status})"

    # Transitions guard and change the status only; flows.returns does everything else.

    @transition(field=status, source=ReturnStatus.REQUESTED, target=ReturnStatus.AUTHORIZED)
    def authorize(self) -> None:
        """Staff (or the return window) agreed: the units may be sent back."""

    @transition(field=status, source=ReturnStatus.AUTHORIZED, target=ReturnStatus.RECEIVED)
    def receive(self) -> None:
        """The units arrived."""

    @transition(field=status, source=ReturnStatus.RECEIVED, target=ReturnStatus.REFUNDED)
    def refund(self) -> None:
        """The refund went through."""

    @transition(
        field=status,
        source=[ReturnStatus.REQUESTED, ReturnStatus.AUTHORIZED],
        target=ReturnStatus.REJECTED,
    )
    def reject(self) -> None:
        """Staff refused it."""

    @transition(
        field=status,
        source=[ReturnStatus.REQUESTED, ReturnStatus.AUTHORIZED],
        target=ReturnStatus.CANCELLED,
    )
    def cancel(self) -> None:
        """Withdrawn."""


# Every transition a return can take, by name (the Return model's transition methods).
RETURN_TRANSITIONS = ("authorize", "receive", "refund", "reject", "cancel")


class ReturnLine(models.Model):
    return_request = models.ForeignKey(Return, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey(OrderLine, on_delete=models.PROTECT, related_name="return_lines")
    quantity = models.IntegerField()
    # Set on receipt: back on the shelf (a `return` stock movement) or disposed of.
    disposition = models.CharField(max_length=16, choices=Return.Disposition.choices, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="return_line_quantity_positive"
            ),
            models.UniqueConstraint(
                fields=["return_request", "order_line"], name="return_line_unique_order_line"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.order_line_id}"


class ReturnStatusChange(models.Model):
    """Audit trail of a return: one row per transition (and one for its opening)."""

    return_request = models.ForeignKey(
        Return, on_delete=models.CASCADE, related_name="status_changes"
    )
    from_status = models.CharField(max_length=32, blank=True)
    to_status = models.CharField(max_length=32)
    transition = models.CharField(max_length=32)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_label = models.CharField(max_length=150)
    reason = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.return_request_id}: {self.from_status or '-'} -> {self.to_status}"


class OrderEdit(TimeStampedModel):
    """One edit of an order before it is routed (flows.edit): the requested changes, priced
    when proposed, applied at most once when committed."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        COMMITTED = "committed", "Committed"
        FAILED = "failed", "Failed"
        SUPERSEDED = "superseded", "Superseded"

    class PaymentAction(models.TextChoices):
        # No live authorization: the next payment simply uses the new total.
        NONE = "none", "None"
        # A confirmed order whose total rises needs a new authorization.
        REAUTHORIZE = "reauthorize", "Reauthorize"
        # A confirmed order whose total falls: the capture at shipment takes the new total.
        REDUCE = "reduce", "Reduce"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="edits")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED)
    # The request: {sku: new quantity} (0 removes the line), and a new address or null.
    lines = models.JSONField()
    shipping_address = models.JSONField(null=True, blank=True)
    # What the order was when priced; a commit on a changed order is refused.
    base = models.JSONField()
    # The priced preview.
    subtotal_amount = models.BigIntegerField()
    shipping_amount = models.BigIntegerField()
    tax_amount = models.BigIntegerField()
    total_amount = models.BigIntegerField()
    line_taxes = models.JSONField()
    payment_action = models.CharField(max_length=16, choices=PaymentAction.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    committed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["proposed", "committed", "failed", "superseded"]),
                name="order_edit_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(
                    total_amount=F("subtotal_amount") + F("shipping_amount") + F("tax_amount")
                ),
                name="order_edit_total_is_sum",
            ),
        ]

    def __str__(self) -> str:
        return f"edit {self.pk} of {self.order_id} ({self.status})"
