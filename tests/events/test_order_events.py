"""Order events to subscribed services, through a real receiving HTTP server on loopback:
every type of the log, signed, per order in sequence, once per subscriber, retried on a
schedule with every attempt stored, disabled when failing and enabled again."""

import json
import socket
from datetime import timedelta
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from core import log_context
from core.models import OutboxMessage
from core.outbox import outbox_handle
from core.signing import SIGNATURE_HEADER, SignatureInvalid, verify
from events.api.serializers import OrderEventOutputSerializer
from events.models import EventDelivery, EventDeliveryAttempt, EventSubscription
from events.services import deliveries_due, order_events_purge, retry_delay
from orders.models import OrderEvent, OrderStatusChange
from tests.events.conftest import (
    HANDLER,
    confirmed_order,
    events_messages,
    make_due,
    payment_captured,
    send_due,
    subscribe,
)

pytestmark = pytest.mark.django_db


def feed_event(event: OrderEvent) -> dict[str, Any]:
    shown = dict(OrderEventOutputSerializer(event).data)
    shown.pop("cursor")
    return json.loads(json.dumps(shown, cls=DjangoJSONEncoder))


def test_every_event_type_is_delivered_signed_as_the_feed_shows_it_in_order(receiver):
    # Given a subscription to every type, and an order created, confirmed and captured
    subscription = subscribe(receiver.url("/all"), name="all")
    order = confirmed_order()
    payment_captured(order)
    created, confirmed, captured = events_messages(order)
    assert created.queue == "events"

    # When the messages are handled out of order (the last one first)
    for message in (captured, confirmed, created):
        outbox_handle(message.pk)

    # Then each event arrived once, in sequence, signed, as the feed shows it
    events = list(OrderEvent.objects.filter(order=order).order_by("sequence"))
    requests = receiver.on("/all")
    assert [r.event["type"] for r in requests] == [
        "order.created",
        "order.confirmed",
        "payment.captured",
    ]
    for request, event in zip(requests, events, strict=True):
        verify(request.body, request.headers[SIGNATURE_HEADER], subscription.secret)
        assert request.headers["Idempotency-Key"] == str(event.id)
        assert request.headers["Content-Type"] == "application/json"
        body = request.event
        assert body.pop("created_at") == body["occurred_at"]
        assert body == feed_event(event)
    assert set(
        EventDelivery.objects.filter(subscription=subscription).values_list("status", "attempts")
    ) == {("delivered", 1)}
    assert EventDeliveryAttempt.objects.filter(succeeded=True, response_status=204).count() == 3


def test_subscriptions_get_only_their_types_and_inactive_ones_nothing(receiver):
    # Given subscriptions to one type each, to every type, and an inactive one
    subscribe(receiver.url("/payments"), name="payments", topics=["payment.captured"])
    subscribe(receiver.url("/shipping"), name="shipping", topics=["order.shipped"])
    subscribe(receiver.url("/all"), name="all")
    subscribe(receiver.url("/paused"), name="paused", is_active=False)
    order = confirmed_order()
    payment_captured(order)

    # When every message is handled
    for message in events_messages(order):
        outbox_handle(message.pk)

    # Then each active subscription received what it wants, the inactive one nothing
    assert [r.event["type"] for r in receiver.on("/payments")] == ["payment.captured"]
    assert len(receiver.on("/all")) == 3
    assert receiver.on("/shipping") == receiver.on("/paused") == []


def test_without_subscribers_an_event_writes_no_delivery_work(receiver):
    # Given no subscription, then one to payment.captured only
    nobody = confirmed_order()
    subscribe(receiver.url("/payments"), name="payments", topics=["payment.captured"])

    # When another order is placed, confirmed and captured
    watched = confirmed_order()
    payment_captured(watched)

    # Then only the watched type, after the subscription, costs an outbox message
    messages = OutboxMessage.objects.filter(handler=HANDLER)
    assert list(messages.values_list("topic", "payload__order_id")) == [
        ("order_event.payment.captured", str(watched.pk))
    ]
    assert not messages.filter(payload__order_id=str(nobody.pk)).exists()


def test_handling_a_message_twice_delivers_once(receiver):
    subscribe(receiver.url("/crm"), name="crm")
    order = confirmed_order()
    created, confirmed = events_messages(order)
    outbox_handle(created.pk)
    outbox_handle(confirmed.pk)

    # When a message is handled again (a worker died before marking it done)
    OutboxMessage.objects.filter(pk=confirmed.pk).update(status=OutboxMessage.Status.DISPATCHED)
    outbox_handle(confirmed.pk)

    # Then the subscriber received each event once
    assert len(receiver.on("/crm")) == 2
    assert EventDeliveryAttempt.objects.count() == 2


def test_a_failing_event_holds_back_its_order_only_and_is_retried_on_the_schedule(receiver):
    # Given a receiver that fails the next two requests, and two orders
    subscription = subscribe(receiver.url("/flaky"), name="flaky")
    first, second = confirmed_order(), confirmed_order()
    receiver.fail_next["/flaky"] = 2

    # When the first order's events are handled: its first event fails
    before = timezone.now()
    for message in events_messages(first):
        outbox_handle(message.pk)
    head = EventDelivery.objects.get(subscription=subscription, order=first, sequence=1)
    assert (head.status, head.attempts, head.last_error) == ("pending", 1, "HTTP 500")
    assert before + timedelta(seconds=60) <= head.next_attempt_at
    assert head.next_attempt_at <= timezone.now() + timedelta(seconds=72)
    # ...and its later event waits behind it, not even tried
    assert EventDelivery.objects.get(order=first, sequence=2).attempts == 0
    assert len(receiver.on("/flaky")) == 1

    # And the second order's events fail once, then go through without waiting
    for message in events_messages(second):
        outbox_handle(message.pk)
    assert deliveries_due() == []
    make_due(subscription)
    send_due()

    # Then every event arrived, each order in sequence, the failed ones retried
    by_order: dict[str, list[int]] = {}
    for request in receiver.received:
        by_order.setdefault(request.event["order_id"], []).append(request.event["sequence"])
    assert by_order == {str(first.pk): [1, 1, 2], str(second.pk): [1, 1, 2]}
    assert set(EventDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    # ...and every attempt is stored with its answer
    attempts = list(EventDeliveryAttempt.objects.filter(delivery=head).order_by("started_at", "pk"))
    assert [(a.response_status, a.succeeded) for a in attempts] == [(500, False), (204, True)]
    assert attempts[0].response_excerpt == "boom: try later"
    assert attempts[0].error == "HTTP 500"
    assert all(a.duration_ms >= 0 for a in attempts)


def test_retry_schedule_spans_more_than_a_day_with_jitter_that_only_lengthens():
    delays = [retry_delay(failed_attempts=n) for n in range(1, 8)]
    schedule = [60, 300, 1800, 7200, 21600, 28800, 43200]

    assert all(delay is not None for delay in delays)
    for delay, base in zip(delays, schedule, strict=True):
        assert delay is not None
        assert base <= delay.total_seconds() <= base * 1.2
    assert sum(schedule) >= 24 * 3600
    assert retry_delay(failed_attempts=8) is None


def test_unreachable_receiver_is_an_attempt_with_its_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subscribe(f"http://127.0.0.1:{port}/events", name="gone")
    order = confirmed_order()

    outbox_handle(events_messages(order)[0].pk)

    attempt = EventDeliveryAttempt.objects.get()
    assert (attempt.response_status, attempt.succeeded) == (None, False)
    assert "ConnectionError" in attempt.error
    assert EventDelivery.objects.get(sequence=1).status == "pending"


def test_a_delivery_whose_schedule_is_spent_is_given_up_and_the_order_goes_on(receiver, settings):
    # Given a short schedule and a receiver that fails three times
    settings.EVENTS_RETRY_SCHEDULE_SECONDS = (0, 0)
    subscription = subscribe(receiver.url("/down"), name="down")
    order = confirmed_order()
    receiver.fail_next["/down"] = 3

    # When the events are handled and retried
    for message in events_messages(order):
        outbox_handle(message.pk)
    assert len(receiver.on("/down")) == 2
    send_due()

    # Then the first event was given up after three attempts and the second delivered
    # right after it
    first, second = EventDelivery.objects.filter(subscription=subscription).order_by("sequence")
    assert (first.status, first.attempts, first.next_attempt_at) == ("failed", 3, None)
    assert (second.status, second.attempts) == ("delivered", 1)
    assert [r.event["sequence"] for r in receiver.on("/down")] == [1, 1, 1, 2]


def test_rotation_signs_with_both_secrets_until_the_previous_one_expires(receiver):
    # Given a subscription whose secret is being rotated
    subscription = subscribe(
        receiver.url("/rotating"),
        name="rotating",
        previous_secret="old-secret",
        previous_secret_expires_at=timezone.now() + timedelta(hours=1),
    )
    order = confirmed_order()

    # When an event is delivered
    outbox_handle(events_messages(order)[0].pk)

    # Then the new and the old secret each verify it
    (request,) = receiver.on("/rotating")
    header = request.headers[SIGNATURE_HEADER]
    assert header.count("v1=") == 2
    verify(request.body, header, subscription.secret)
    verify(request.body, header, "old-secret")

    # And once the previous secret expired, only the new one does
    EventSubscription.objects.filter(pk=subscription.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    outbox_handle(events_messages(order)[1].pk)
    second = receiver.on("/rotating")[1]
    verify(second.body, second.headers[SIGNATURE_HEADER], subscription.secret)
    with pytest.raises(SignatureInvalid):
        verify(second.body, second.headers[SIGNATURE_HEADER], "old-secret")


def test_a_message_written_before_the_event_log_drove_deliveries_is_still_delivered(
    receiver,
):
    # Given a pending message of the former handler, naming an order status change
    subscribe(receiver.url("/crm"), name="crm")
    order = confirmed_order()
    change = OrderStatusChange.objects.get(order=order, to_status="confirmed")
    legacy = OutboxMessage.objects.create(
        topic="order.confirmed",
        handler="events.deliver_order_event",
        queue="events",
        payload={"order_id": str(order.pk), "status_change_id": change.pk},
        dedup_key=f"events.deliver_order_event:order-status-change-{change.pk}",
        available_at=timezone.now(),
    )

    # When it is handled
    assert outbox_handle(legacy.pk) is True

    # Then the change's event (and the order's one before it) arrived, in sequence
    assert [r.event["type"] for r in receiver.on("/crm")] == ["order.created", "order.confirmed"]


def test_purging_old_events_takes_their_deliveries_and_attempts_along(receiver):
    subscribe(receiver.url("/crm"), name="crm")
    order = confirmed_order()
    for message in events_messages(order):
        outbox_handle(message.pk)
    OrderEvent.objects.filter(order=order, sequence=1).update(
        occurred_at=timezone.now() - timedelta(days=31)
    )

    assert order_events_purge() == 1

    assert list(EventDelivery.objects.values_list("sequence", flat=True)) == [2]
    assert EventDeliveryAttempt.objects.count() == 1


def test_a_delivery_carries_the_id_of_the_request_that_caused_the_event(receiver):
    # Given an order changed by a request tagged req-77
    subscribe(receiver.url("/traced"), name="traced")
    with log_context.bound(request_id="req-77"):
        order = confirmed_order()
    messages = events_messages(order)
    assert {message.request_id for message in messages} == {"req-77"}

    # When the worker delivers its events
    for message in messages:
        outbox_handle(message.pk)

    # Then each POST names that request
    requests = receiver.on("/traced")
    assert [r.headers["X-Request-ID"] for r in requests] == ["req-77"] * len(messages)
