from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import TimeStampedModel


class EmailDelivery(TimeStampedModel):
    """One email to an order's customer: at most one per (order, kind, dedup_key), however
    often asked.

    The row is created before the first attempt and outlives every retry. A worker claims
    it (``locked_at``) for the time it talks to SMTP, so two workers never send it at once;
    a worker that died mid-send leaves a claim that expires after EMAIL_SEND_LOCK_TIMEOUT.
    """

    class Kind(models.TextChoices):
        ORDER_CONFIRMED = "order_confirmed", "Order confirmed"
        PAYMENT_FAILED = "payment_failed", "Payment failed"
        ORDER_SHIPPED = "order_shipped", "Order shipped"
        ORDER_CANCELLED = "order_cancelled", "Order cancelled"
        # An order refunded without a refund through the payment provider (paid offline).
        ORDER_REFUNDED = "order_refunded", "Order refunded"
        ORDER_DELIVERED = "order_delivered", "Order delivered"
        # One per refund through the provider, with that refund's amount.
        REFUND_ISSUED = "refund_issued", "Refund issued"
        # A return was authorized: what to send back, and where.
        RETURN_AUTHORIZED = "return_authorized", "Return authorized"
        # The unshipped rest of a partially shipped order was cancelled at a warehouse.
        ORDER_REST_CANCELLED = "order_rest_cancelled", "Rest of order cancelled"
        # An edit (quantities, lines, address) was committed: the order as it is now.
        ORDER_UPDATED = "order_updated", "Order updated"
        # Paid, but some units are backordered: the order waits for stock.
        ORDER_AWAITING_STOCK = "order_awaiting_stock", "Order awaiting stock"
        # Receipts covered the backordered units: the order is being prepared.
        BACKORDER_IN_STOCK = "backorder_in_stock", "Backordered items in stock"

    class Status(models.TextChoices):
        # Not sent yet: never tried, being tried, or the last attempt failed (retryable).
        PENDING = "pending", "Pending"
        # Accepted by the SMTP server.
        SENT = "sent", "Sent"
        # Given up after the retries ran out; a later send request tries again.
        FAILED = "failed", "Failed"

    order = models.ForeignKey(
        "orders.Order", on_delete=models.PROTECT, related_name="email_deliveries"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # Tells apart emails of one kind that an order gets more than once (each refund).
    dedup_key = models.CharField(max_length=64, blank=True, default="")
    to_address = models.EmailField()
    subject = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # The Message-ID header, the same on every attempt, so an MTA can drop a duplicate.
    message_id = models.CharField(max_length=255, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Set while a worker is talking to SMTP for this row; cleared when it is done.
    locked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "email deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["order", "kind", "dedup_key"], name="email_delivery_once_per_kind"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sent", "failed"]),
                name="email_delivery_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(status="sent", sent_at__isnull=False) | ~Q(status="sent"),
                name="email_delivery_sent_has_sent_at",
            ),
        ]
        indexes = [models.Index(fields=["status", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} for {self.order_id} ({self.status})"


# Kinds a customer may switch off; the others (confirmation, payment problems, a
# cancellation) always go out.
OPTIONAL_KINDS = (
    EmailDelivery.Kind.ORDER_SHIPPED,
    EmailDelivery.Kind.ORDER_DELIVERED,
    EmailDelivery.Kind.REFUND_ISSUED,
)


class NotificationPreference(TimeStampedModel):
    """A customer's choice for one optional kind of email; no row means it is sent."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(max_length=32, choices=[(k.value, k.label) for k in OPTIONAL_KINDS])
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["user_id", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="notification_preference_once"),
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in OPTIONAL_KINDS]),
                name="notification_preference_optional_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind}: {'on' if self.enabled else 'off'}"
