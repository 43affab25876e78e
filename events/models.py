from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from core.models import TimeStampedModel
from events.topic_cache import topics_with_subscribers_forget
from orders.models import Order, OrderEvent
from orders.states import EVENT_TYPES

ALL_TOPICS = "*"
# Every event type of the order event log a subscription may name.
TOPICS = EVENT_TYPES


def topics_default() -> list[str]:
    return [ALL_TOPICS]


class EventSubscription(TimeStampedModel):
    """An internal service that receives order events as signed JSON POSTs."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=2048)
    # Signs every POST (X-OMS-Signature); the receiver verifies with the same secret.
    secret = models.CharField(max_length=255)
    # While a secret is rotated: the one before, also signing every POST until it expires
    # (no expiry: until it is cleared).
    previous_secret = models.CharField(
        max_length=255,
        blank=True,
        help_text="To rotate: copy the current secret here, set an expiry, enter a new secret.",
    )
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Event types such as "order.confirmed" or "payment.captured", or ["*"] for all.
    topics = models.JSONField(default=topics_default)
    is_active = models.BooleanField(default=True)
    # Set when deliveries kept failing and the subscription was disabled (see
    # events.services.delivery); cleared when staff enable it again.
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)
    # The first failed attempt since the last delivered one (None: the last one worked),
    # and how many attempts failed since.
    failing_since = models.DateTimeField(null=True, blank=True)
    failed_attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        topics: Any = self.topics
        if not isinstance(topics, list) or not topics:
            raise ValidationError({"topics": 'A non-empty list of topics, or ["*"].'})
        unknown = [t for t in topics if t != ALL_TOPICS and t not in TOPICS]
        if unknown:
            raise ValidationError({"topics": f"Unknown topics: {', '.join(map(str, unknown))}."})

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        self._forget_topics()

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        deleted = super().delete(*args, **kwargs)
        self._forget_topics()
        return deleted

    @staticmethod
    def _forget_topics() -> None:
        topics_with_subscribers_forget()

    def wants(self, topic: str) -> bool:
        return ALL_TOPICS in self.topics or topic in self.topics

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets each POST is signed with: the current one, and the previous one
        while it has not expired."""
        secrets = [self.secret]
        if self.previous_secret and (
            self.previous_secret_expires_at is None or self.previous_secret_expires_at > now
        ):
            secrets.append(self.previous_secret)
        return secrets


class EventDelivery(TimeStampedModel):
    """One event of the log to one subscriber: at most one row, however often the event
    is handled. An order's deliveries to a subscriber go out in `sequence` order."""

    class Status(models.TextChoices):
        # Not delivered yet: due at next_attempt_at (retried on the schedule).
        PENDING = "pending", "Pending"
        # The subscriber answered 2xx.
        DELIVERED = "delivered", "Delivered"
        # Every attempt of the schedule failed: given up; the order's later events go on.
        FAILED = "failed", "Failed"

    subscription = models.ForeignKey(
        EventSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    # The event's id, sent as `id` and as the Idempotency-Key (rows written before the
    # event log drove deliveries hold the status change's outbox key instead).
    event_key = models.CharField(max_length=255)
    topic = models.CharField(max_length=64)
    # Null only on rows written before deliveries were driven by the event log.
    event = models.ForeignKey(
        OrderEvent,
        on_delete=models.CASCADE,
        to_field="id",
        null=True,
        blank=True,
        related_name="deliveries",
    )
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    sequence = models.PositiveIntegerField(null=True, blank=True)
    # The body of rows written before the event log drove deliveries ({} since: the
    # body is built from the event).
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Attempts in the current round (a re-delivery starts a new round; every attempt
    # stays in EventDeliveryAttempt).
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker posting this delivery holds it until then (a dead worker's claim lapses).
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "event deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event_key"], name="event_delivery_once_per_subscriber"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "delivered", "failed"]),
                name="event_delivery_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "topic"]),
            # The oldest undelivered event of each (subscription, order).
            models.Index(
                fields=["subscription", "order", "sequence"],
                condition=Q(status="pending"),
                name="event_delivery_pending_head",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_key} to {self.subscription_id} ({self.status})"


class EventDeliveryAttempt(models.Model):
    """One POST of a delivery (or one refused by the subscriber's open breaker)."""

    delivery = models.ForeignKey(EventDelivery, on_delete=models.CASCADE, related_name="tries")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    # None: no answer (no connection, timeout, breaker open).
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=2000, blank=True)
    succeeded = models.BooleanField()

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["delivery", "started_at"])]

    def __str__(self) -> str:
        outcome = self.response_status or self.error[:40]
        return f"attempt of {self.delivery_id} at {self.started_at:%Y-%m-%d %H:%M:%S}: {outcome}"
