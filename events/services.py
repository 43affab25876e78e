"""Deliver order events to subscribed internal services.

Wire contract: ``POST <subscription url>`` with ``Content-Type: application/json``,
``Idempotency-Key: <event id>`` and ``X-OMS-Signature`` (``core.signing`` over the
exact body bytes, with the subscription's secret). The body is
``{"id", "type", "created_at", "data"}``, compact with sorted keys. Any 2xx answer
delivers the event; anything else (another status, a redirect, no connection, the
subscriber's breaker open) is retried by the outbox with the same id, so a receiver
deduplicates on ``Idempotency-Key``.
"""

import json
import time
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from core.breakers import circuit_breaker
from core.signing import SIGNATURE_HEADER, sign
from events.errors import EventDeliveriesIncomplete, EventDeliveryFailed
from events.models import EventDelivery, EventSubscription
from orders.models import OrderEvent, OrderStatusChange

# Per subscriber: fail fast while a receiver is down instead of waiting on each event.
BREAKER_FAIL_MAX = 5
BREAKER_RESET_SECONDS = 30


def order_event_key(payload: dict[str, Any]) -> str:
    """The event's id: the outbox key of the order status change that published it."""
    return f"order-status-change-{payload['status_change_id']}"


def order_event_deliver(*, topic: str, payload: dict[str, Any]) -> None:
    """Deliver one order event to every active subscription that wants its topic.

    Subscribers that already have it are skipped. Raise EventDeliveriesIncomplete after
    trying every subscriber when any of them failed.
    """
    subscriptions = [
        subscription
        for subscription in EventSubscription.objects.filter(is_active=True).order_by("pk")
        if subscription.wants(topic)
    ]
    if not subscriptions:
        return
    event_key = order_event_key(payload)
    occurred_at = (
        OrderStatusChange.objects.filter(pk=payload["status_change_id"])
        .values_list("created_at", flat=True)
        .first()
    ) or timezone.now()
    failures: list[str] = []
    for subscription in subscriptions:
        delivery, _ = EventDelivery.objects.get_or_create(
            subscription=subscription,
            event_key=event_key,
            defaults={"topic": topic, "payload": payload},
        )
        if delivery.status == EventDelivery.Status.DELIVERED:
            continue
        try:
            _deliver(subscription, delivery, occurred_at)
        except Exception as error:  # any answer but 2xx, unreachable, breaker open
            reason = f"{type(error).__name__}: {error}"
            EventDelivery.objects.filter(pk=delivery.pk).exclude(
                status=EventDelivery.Status.DELIVERED
            ).update(
                status=EventDelivery.Status.FAILED,
                attempts=F("attempts") + 1,
                last_error=reason[:2000],
            )
            failures.append(f"{subscription.name}: {reason}")
            continue
        EventDelivery.objects.filter(pk=delivery.pk).update(
            status=EventDelivery.Status.DELIVERED,
            attempts=F("attempts") + 1,
            last_error="",
            delivered_at=timezone.now(),
        )
    if failures:
        raise EventDeliveriesIncomplete(
            f"{event_key} not delivered to {len(failures)} subscriber(s): " + "; ".join(failures)
        )


def event_body(delivery: EventDelivery, occurred_at: datetime) -> bytes:
    """Return the exact bytes sent: the same event, the same bytes on every attempt."""
    envelope = {
        "id": delivery.event_key,
        "type": delivery.topic,
        "created_at": occurred_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


def _deliver(
    subscription: EventSubscription, delivery: EventDelivery, occurred_at: datetime
) -> None:
    breaker = circuit_breaker(
        f"subscriber-{subscription.pk}",
        fail_max=BREAKER_FAIL_MAX,
        reset_timeout=BREAKER_RESET_SECONDS,
    )
    body = event_body(delivery, occurred_at)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "oms-events/1",
        "Idempotency-Key": delivery.event_key,
        SIGNATURE_HEADER: sign(body, subscription.secret, int(time.time())),
    }
    breaker.call(_post, subscription.url, body, headers)


def _post(url: str, body: bytes, headers: dict[str, str]) -> None:
    timeout = (settings.EVENTS_CONNECT_TIMEOUT_SECONDS, settings.EVENTS_READ_TIMEOUT_SECONDS)
    with requests.post(
        url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
    ) as response:
        if not 200 <= response.status_code < 300:
            raise EventDeliveryFailed(f"{response.status_code} from {url}")


def order_events_purge(*, now: datetime | None = None) -> int:
    """Delete order events older than ORDER_EVENT_RETENTION. Return how many."""
    cutoff = (now or timezone.now()) - settings.ORDER_EVENT_RETENTION
    deleted, _ = OrderEvent.objects.filter(occurred_at__lt=cutoff).delete()
    return deleted
