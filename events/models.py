from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from core.models import TimeStampedModel
from events.topic_cache import topics_with_subscribers_forget
from orders.states import OrderStatus

ALL_TOPICS = "*"
# Every topic an order status change publishes.
ORDER_TOPICS = tuple(f"order.{status}" for status in OrderStatus.values)


def topics_default() -> list[str]:
    return [ALL_TOPICS]


class EventSubscription(TimeStampedModel):
    """An internal service that receives order events as signed JSON POSTs."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=2048)
    # Signs every POST (X-OMS-Signature); the receiver verifies with the same secret.
    secret = models.CharField(max_length=255)
    # Topic names such as "order.confirmed", or ["*"] for every order topic.
    topics = models.JSONField(default=topics_default)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        topics: Any = self.topics
        if not isinstance(topics, list) or not topics:
            raise ValidationError({"topics": 'A non-empty list of topics, or ["*"].'})
        unknown = [t for t in topics if t != ALL_TOPICS and t not in ORDER_TOPICS]
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


class EventDelivery(TimeStampedModel):
    """One event to one subscriber: at most one row, however often the event is handled."""

    class Status(models.TextChoices):
        # Not delivered yet: never tried, or being tried.
        PENDING = "pending", "Pending"
        # The subscriber answered 2xx.
        DELIVERED = "delivered", "Delivered"
        # The last attempt failed; the outbox retries it.
        FAILED = "failed", "Failed"

    subscription = models.ForeignKey(
        EventSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    # The outbox event key (order-status-change-<id>), sent as the Idempotency-Key.
    event_key = models.CharField(max_length=255)
    topic = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
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
        indexes = [models.Index(fields=["status", "topic"])]

    def __str__(self) -> str:
        return f"{self.event_key} to {self.subscription_id} ({self.status})"
