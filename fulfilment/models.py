from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from core.models import TimeStampedModel


class FulfilmentRequest(ConcurrentTransitionMixin, TimeStampedModel):
    """A request to one warehouse to fulfil its part of an order.

    Its id gives the Idempotency-Key sent to the warehouse, so a retried or redelivered
    routing task never asks twice for the same shipment.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # to be sent, or retried after an outage
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"  # the warehouse cannot fill it
        WITHDRAWN = "withdrawn", "Withdrawn"  # the order was cancelled; the warehouse confirmed

    order = models.ForeignKey(
        "orders.Order", on_delete=models.PROTECT, related_name="fulfilment_requests"
    )
    warehouse = models.ForeignKey(
        "inventory.Warehouse", on_delete=models.PROTECT, related_name="fulfilment_requests"
    )
    status = FSMField(max_length=16, choices=Status.choices, default=Status.PENDING, protected=True)
    lines = models.JSONField()  # [{sku, name, quantity}] as sent
    attempts = models.PositiveIntegerField(default=0)
    reject_code = models.CharField(max_length=64, blank=True)
    reject_reason = models.CharField(max_length=500, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "warehouse"],
                condition=Q(status__in=["pending", "accepted"]),
                name="fulfilment_request_one_open_per_warehouse",
            )
        ]

    def __str__(self) -> str:
        return f"{self.order_id}@{self.warehouse_id} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        return f"oms-fulfilment-request-{self.pk}"

    @property
    def withdraw_idempotency_key(self) -> str:
        return f"oms-fulfilment-withdrawal-{self.pk}"

    @transition(field=status, source=Status.PENDING, target=Status.ACCEPTED)
    def accept(self) -> None:
        """The warehouse will ship its part."""

    @transition(field=status, source=Status.PENDING, target=Status.REJECTED)
    def reject(self) -> None:
        """The warehouse cannot fill it: its units go elsewhere."""

    @transition(field=status, source=[Status.PENDING, Status.ACCEPTED], target=Status.WITHDRAWN)
    def withdraw(self) -> None:
        """The warehouse confirmed it will not ship (the order is being cancelled)."""


class Shipment(ConcurrentTransitionMixin, TimeStampedModel):
    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"  # the warehouse will ship it
        # Some of its lines left; the rest is still to ship (or to withdraw).
        PARTIALLY_SHIPPED = "partially_shipped", "Partially shipped"
        SHIPPED = "shipped", "Shipped"  # every line left (or the rest was withdrawn)
        DELIVERED = "delivered", "Delivered"
        WITHDRAWN = "withdrawn", "Withdrawn"  # the order was cancelled before it left

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="shipments")
    warehouse = models.ForeignKey(
        "inventory.Warehouse", on_delete=models.PROTECT, related_name="shipments"
    )
    fulfilment_request = models.OneToOneField(
        FulfilmentRequest, on_delete=models.PROTECT, related_name="shipment"
    )
    reference = models.CharField(max_length=128)  # the warehouse's shipment id
    status = FSMField(
        max_length=20, choices=Status.choices, default=Status.ACCEPTED, protected=True
    )
    carrier = models.CharField(max_length=64, blank=True)
    tracking_number = models.CharField(max_length=128, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["warehouse", "reference"], name="shipment_reference_unique_per_warehouse"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.status})"

    @transition(
        field=status,
        source=[Status.ACCEPTED, Status.PARTIALLY_SHIPPED, Status.WITHDRAWN],
        target=Status.SHIPPED,
    )
    def ship(self) -> None:
        """It left the warehouse (even after a withdrawal: the record follows the goods)."""

    @transition(
        field=status,
        source=[Status.ACCEPTED, Status.PARTIALLY_SHIPPED],
        target=Status.PARTIALLY_SHIPPED,
    )
    def ship_part(self) -> None:
        """Some of its lines left the warehouse; the rest has not."""

    @transition(field=status, source=Status.PARTIALLY_SHIPPED, target=Status.SHIPPED)
    def close(self) -> None:
        """The warehouse withdrew the rest: what left is the whole shipment."""

    @transition(field=status, source=Status.SHIPPED, target=Status.DELIVERED)
    def deliver(self) -> None:
        """It reached the customer."""

    @transition(field=status, source=Status.ACCEPTED, target=Status.WITHDRAWN)
    def withdraw(self) -> None:
        """The warehouse confirmed it will not ship it."""


class ShipmentLine(TimeStampedModel):
    """Units of one order line that left with a shipment, as one shipped report said."""

    shipment = models.ForeignKey(Shipment, on_delete=models.PROTECT, related_name="lines")
    order_line = models.ForeignKey(
        "orders.OrderLine", on_delete=models.PROTECT, related_name="shipment_lines"
    )
    sku = models.CharField(max_length=64)
    quantity = models.IntegerField()
    # The warehouse's event_id of the report: a repeated report adds nothing.
    event_id = models.CharField(max_length=128)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="shipment_line_quantity_positive"
            ),
            models.UniqueConstraint(
                fields=["shipment", "event_id", "sku"], name="shipment_line_once_per_report"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"
