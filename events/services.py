"""Deliver the order event log to subscribed internal services.

Wire contract: ``POST <subscription url>`` with ``Content-Type: application/json``,
``Idempotency-Key: <event id>`` and ``X-OMS-Signature`` (``core.signing`` over the exact
body bytes: one ``v1`` entry per secret of the subscription, two while a secret is
rotated). The body is the event as the feed shows it, ``{"id", "type", "occurred_at",
"order_id", "sequence", "api_version", "data"}`` plus ``created_at`` (= ``occurred_at``,
kept for receivers written before), compact with sorted keys. Any 2xx answer delivers
the event; anything else (another status, a redirect, no connection, a timeout, the
subscriber's breaker open) is a failed attempt, retried on EVENTS_RETRY_SCHEDULE_SECONDS.

Per (subscription, order), events go out in ``sequence`` order: only the oldest pending
delivery of the pair (its head) is ever posted, and a worker posts it only after
claiming it with a conditional UPDATE, so two workers never post one pair at once and
a later event waits until the earlier one was delivered or given up. Pairs do not wait
for each other.
"""

import json
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pybreaker
import requests
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.breakers import circuit_breaker
from core.errors import NotFound
from core.log_context import request_id_header
from core.signing import SIGNATURE_HEADER, sign_with_each
from events.errors import EventDeliveryFailed, EventNotSubscribed
from events.metrics import WEBHOOK_DELIVERY_LAG
from events.models import ALL_TOPICS, EventDelivery, EventDeliveryAttempt, EventSubscription
from orders.models import OrderEvent, OrderStatusChange

# Per subscriber: fail fast while a receiver is down instead of waiting on each event.
BREAKER_FAIL_MAX = 5
BREAKER_RESET_SECONDS = 30
RESPONSE_EXCERPT_BYTES = 500
QUEUE_BATCH_SIZE = 1000
DUE_BATCH_SIZE = 500

# The head of each (subscription, order) of an active subscription, when it is due.
_DUE_HEADS_SQL = """
SELECT subscription_id, order_id FROM (
    SELECT DISTINCT ON (d.subscription_id, d.order_id)
           d.subscription_id, d.order_id, d.next_attempt_at, d.claimed_until
    FROM events_eventdelivery d
    JOIN events_eventsubscription s ON s.id = d.subscription_id AND s.is_active
    WHERE d.status = 'pending' AND d.order_id IS NOT NULL
    ORDER BY d.subscription_id, d.order_id, d.sequence
) heads
WHERE next_attempt_at <= %s AND (claimed_until IS NULL OR claimed_until < %s)
ORDER BY next_attempt_at
LIMIT %s
"""


def retry_delay(*, failed_attempts: int) -> timedelta | None:
    """How long to wait after a delivery's `failed_attempts`-th failed attempt (with
    jitter that only lengthens it); None once the schedule is spent: give up."""
    schedule = settings.EVENTS_RETRY_SCHEDULE_SECONDS
    if failed_attempts > len(schedule):
        return None
    base = schedule[failed_attempts - 1]
    jitter = random.uniform(1, 1 + settings.EVENTS_RETRY_JITTER)  # noqa: S311
    return timedelta(seconds=base * jitter)


def event_body(event: OrderEvent) -> bytes:
    """Return the exact bytes sent: the same event, the same bytes on every attempt."""
    occurred_at = event.occurred_at.isoformat().replace("+00:00", "Z")
    envelope = {
        "id": str(event.id),
        "type": event.type,
        "occurred_at": occurred_at,
        "created_at": occurred_at,
        "order_id": str(event.order_id),
        "sequence": event.sequence,
        "api_version": event.api_version,
        "data": event.data,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


# Queueing -------------------------------------------------------------------------


def _subscribed_types(subscription: EventSubscription) -> Q:
    return Q() if ALL_TOPICS in subscription.topics else Q(type__in=subscription.topics)


def _queue(subscription: EventSubscription, events: Iterable[OrderEvent]) -> None:
    """Write a pending delivery of each event the subscription does not have yet."""
    now = timezone.now()
    batch: list[EventDelivery] = []
    for event in events:
        batch.append(
            EventDelivery(
                subscription=subscription,
                event_key=str(event.id),
                event_id=event.id,
                order_id=event.order_id,
                sequence=event.sequence,
                topic=event.type,
                next_attempt_at=now,
            )
        )
        if len(batch) >= QUEUE_BATCH_SIZE:
            EventDelivery.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    if batch:
        EventDelivery.objects.bulk_create(batch, ignore_conflicts=True)


def order_event_dispatch(*, event_id: str) -> None:
    """Queue the event for every active subscription that wants its type, then post
    what is due of its order to each of them.

    Earlier events of the order that the subscription wants and does not have yet (their
    own message has not been handled: messages of one order can run in any order) are
    queued with it, so the order's events still go out in sequence. Events from before
    the subscription was created are not.
    """
    event = OrderEvent.objects.filter(id=event_id).first()
    if event is None:  # purged meanwhile
        return
    subscriptions = [
        subscription
        for subscription in EventSubscription.objects.filter(is_active=True).order_by("pk")
        if subscription.wants(event.type)
    ]
    for subscription in subscriptions:
        _queue(
            subscription,
            OrderEvent.objects.filter(
                _subscribed_types(subscription),
                order_id=event.order_id,
                sequence__lte=event.sequence,
                occurred_at__gte=subscription.created_at,
            ).order_by("sequence"),
        )
    for subscription in subscriptions:
        order_deliveries_send(subscription_id=subscription.pk, order_id=event.order_id)


def status_change_event_dispatch(*, status_change_id: int) -> None:
    """Dispatch the event of an order status change (outbox messages written before the
    event log drove deliveries name the change, not the event)."""
    change = OrderStatusChange.objects.filter(pk=status_change_id).first()
    if change is None:
        return
    event_type = "order.created" if not change.from_status else f"order.{change.to_status}"
    # The change and its event are written in one transaction, the event just after.
    event = (
        OrderEvent.objects.filter(
            order_id=change.order_id, type=event_type, occurred_at__gte=change.created_at
        )
        .order_by("sequence")
        .first()
    )
    if event is not None:
        order_event_dispatch(event_id=str(event.id))


# Sending --------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptOutcome:
    started_at: datetime
    duration_ms: int
    response_status: int | None
    response_excerpt: str
    error: str

    @property
    def succeeded(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300


def order_deliveries_send(*, subscription_id: int, order_id: uuid.UUID | str) -> int:
    """Post the subscription's due deliveries of one order, oldest first, stopping at
    the first that fails and will be retried (the later ones wait behind it); one given
    up lets the next go. Return how many were delivered. Safe to run in several workers
    at once."""
    delivered = 0
    while True:
        subscription = EventSubscription.objects.filter(pk=subscription_id, is_active=True).first()
        if subscription is None:
            return delivered
        head = (
            EventDelivery.objects.filter(
                subscription_id=subscription_id,
                order_id=order_id,
                status=EventDelivery.Status.PENDING,
            )
            .order_by("sequence")
            .select_related("event")
            .first()
        )
        now = timezone.now()
        if head is None or head.event is None or (head.next_attempt_at or now) > now:
            return delivered
        token = uuid.uuid4()
        # Claim the head. Fails when another worker holds it, or it stopped being
        # pending meanwhile (then the next loop reads the new head).
        claimed = (
            EventDelivery.objects.filter(pk=head.pk, status=EventDelivery.Status.PENDING)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .update(claimed_until=now + settings.EVENTS_DELIVERY_LEASE, claim_token=token)
        )
        if not claimed:
            if EventDelivery.objects.filter(
                pk=head.pk, status=EventDelivery.Status.PENDING
            ).exists():
                return delivered  # another worker is posting it
            continue
        outcome = _attempt(subscription, head.event)
        if not _attempt_record(subscription, head, token, outcome):
            return delivered  # the order's later events wait for this one's retry
        delivered += outcome.succeeded


def _attempt(subscription: EventSubscription, event: OrderEvent) -> AttemptOutcome:
    body = event_body(event)
    started_at = timezone.now()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "oms-events/2",
        "Idempotency-Key": str(event.id),
        **request_id_header(),
        SIGNATURE_HEADER: sign_with_each(
            body, subscription.signing_secrets(started_at), int(time.time())
        ),
    }
    breaker = circuit_breaker(
        f"subscriber-{subscription.pk}",
        fail_max=BREAKER_FAIL_MAX,
        reset_timeout=BREAKER_RESET_SECONDS,
    )
    status: int | None = None
    excerpt = error = ""
    clock = time.monotonic()
    try:
        status, excerpt = breaker.call(_post, subscription.url, body, headers)
    except EventDeliveryFailed as failure:
        status, excerpt = failure.status, failure.excerpt
        error = f"HTTP {failure.status}"
    except pybreaker.CircuitBreakerError:
        error = "not sent: the subscriber's circuit breaker is open"
    except requests.RequestException as failure:
        error = f"{type(failure).__name__}: {failure}"
    return AttemptOutcome(
        started_at=started_at,
        duration_ms=int((time.monotonic() - clock) * 1000),
        response_status=status,
        response_excerpt=excerpt,
        error=error[:2000],
    )


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    timeout = (settings.EVENTS_CONNECT_TIMEOUT_SECONDS, settings.EVENTS_READ_TIMEOUT_SECONDS)
    with requests.post(
        url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
    ) as response:
        raw = response.raw.read(RESPONSE_EXCERPT_BYTES, decode_content=True) or b""
        excerpt = raw.decode("utf-8", "replace").replace("\x00", "\\u0000")
        if not 200 <= response.status_code < 300:
            # Raised so the breaker counts it; _attempt reads the answer from it.
            raise EventDeliveryFailed(response.status_code, excerpt)
        return response.status_code, excerpt


def _attempt_record(
    subscription: EventSubscription,
    delivery: EventDelivery,
    token: uuid.UUID,
    outcome: AttemptOutcome,
) -> bool:
    """Store the attempt; deliver, reschedule or give up the delivery; track whether the
    subscription keeps failing and disable it when it has for too long. Return whether
    the delivery is settled (delivered or given up)."""
    now = timezone.now()
    mine = EventDelivery.objects.filter(pk=delivery.pk, claim_token=token)
    with transaction.atomic():
        EventDeliveryAttempt.objects.create(
            delivery=delivery,
            started_at=outcome.started_at,
            duration_ms=outcome.duration_ms,
            response_status=outcome.response_status,
            response_excerpt=outcome.response_excerpt,
            error=outcome.error,
            succeeded=outcome.succeeded,
        )
        subscriptions = EventSubscription.objects.filter(pk=subscription.pk)
        if outcome.succeeded:
            delivered = mine.update(
                status=EventDelivery.Status.DELIVERED,
                attempts=F("attempts") + 1,
                delivered_at=now,
                last_error="",
                claimed_until=None,
                claim_token=None,
            )
            subscriptions.update(failing_since=None, failed_attempts=0)
            if delivered and delivery.event is not None:
                lag = max(0.0, (now - delivery.event.occurred_at).total_seconds())
                transaction.on_commit(
                    lambda: WEBHOOK_DELIVERY_LAG.labels(subscription=subscription.name).observe(lag)
                )
            return True
        delay = retry_delay(failed_attempts=delivery.attempts + 1)
        mine.update(
            status=EventDelivery.Status.FAILED if delay is None else EventDelivery.Status.PENDING,
            attempts=F("attempts") + 1,
            next_attempt_at=None if delay is None else now + delay,
            last_error=outcome.error,
            claimed_until=None,
            claim_token=None,
        )
        subscriptions.update(
            failing_since=Coalesce(F("failing_since"), Value(outcome.started_at)),
            failed_attempts=F("failed_attempts") + 1,
        )
        failing = subscriptions.filter(
            is_active=True,
            failing_since__lte=now - settings.EVENTS_DISABLE_AFTER,
            failed_attempts__gte=settings.EVENTS_DISABLE_AFTER_ATTEMPTS,
        ).first()
        if failing is not None and failing.failing_since is not None:
            hours = settings.EVENTS_DISABLE_AFTER.total_seconds() / 3600
            subscriptions.update(
                is_active=False,
                disabled_at=now,
                disabled_reason=(
                    f"Every attempt failed for over {hours:g} hours: "
                    f"{failing.failed_attempts} attempts since "
                    f"{failing.failing_since.isoformat()}; the last: {outcome.error}"
                )[:2000],
            )
            transaction.on_commit(EventSubscription._forget_topics)
    return delay is None


def deliveries_due(*, now: datetime | None = None) -> list[tuple[int, uuid.UUID]]:
    """(subscription id, order id) of each pair whose next delivery is due."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_DUE_HEADS_SQL, [now, now, DUE_BATCH_SIZE])
        return [(row[0], row[1]) for row in cursor.fetchall()]


# Staff ----------------------------------------------------------------------------


def event_subscription_enable(*, subscription_id: int) -> EventSubscription:
    """Enable a subscription again (disabled for failing, or paused): its pending
    deliveries are due at once, with a full retry schedule each."""
    now = timezone.now()
    with transaction.atomic():
        subscription = (
            EventSubscription.objects.select_for_update().filter(pk=subscription_id).first()
        )
        if subscription is None:
            raise NotFound("No such event subscription.")
        subscription.is_active = True
        subscription.disabled_at = None
        subscription.disabled_reason = ""
        subscription.failing_since = None
        subscription.failed_attempts = 0
        subscription.save()
        EventDelivery.objects.filter(
            subscription=subscription, status=EventDelivery.Status.PENDING
        ).update(next_attempt_at=now, attempts=0)
    return subscription


def event_redeliver(
    *,
    subscription_id: int,
    event_id: uuid.UUID | None = None,
    since: datetime | None = None,
) -> int:
    """Deliver one event, or every event of the subscription's topics that occurred
    since a time, to the subscription again (delivered or given up ones too). Return how
    many were queued; workers post them in each order's sequence, within
    EVENTS_DELIVERY_SWEEP_INTERVAL_SECONDS."""
    if (event_id is None) == (since is None):
        raise ValueError("pass event_id or since")
    subscription = EventSubscription.objects.filter(pk=subscription_id).first()
    if subscription is None:
        raise NotFound("No such event subscription.")
    if event_id is not None:
        event = OrderEvent.objects.filter(id=event_id).first()
        if event is None:
            raise NotFound("No such event (events are kept ORDER_EVENT_RETENTION_DAYS).")
        if not subscription.wants(event.type):
            raise EventNotSubscribed(
                f"The subscription's topics do not include {event.type}.", type=event.type
            )
        events = OrderEvent.objects.filter(pk=event.pk)
    else:
        events = OrderEvent.objects.filter(_subscribed_types(subscription), occurred_at__gte=since)
    now = timezone.now()
    with transaction.atomic():
        EventDelivery.objects.filter(
            subscription=subscription, event_id__in=events.values("id")
        ).update(
            status=EventDelivery.Status.PENDING, attempts=0, next_attempt_at=now, last_error=""
        )
        _queue(subscription, events.order_by("order_id", "sequence").iterator())
    return EventDelivery.objects.filter(
        subscription=subscription, event_id__in=events.values("id")
    ).count()


def order_events_purge(*, now: datetime | None = None) -> int:
    """Delete order events older than ORDER_EVENT_RETENTION (their deliveries with them).
    Return how many events."""
    cutoff = (now or timezone.now()) - settings.ORDER_EVENT_RETENTION
    EventDelivery.objects.filter(event__occurred_at__lt=cutoff).delete()
    _, deleted = OrderEvent.objects.filter(occurred_at__lt=cutoff).delete()
    return deleted.get(OrderEvent._meta.label, 0)
