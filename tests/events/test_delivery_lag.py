"""Webhook delivery lag on /metrics: the time from an order event's creation to its
delivery to a subscriber, observed once per delivered event, through a real receiver."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.metrics import metrics_text
from core.outbox import outbox_handle
from events.models import EventDelivery, EventSubscription
from orders.models import OrderEvent
from tests.events.conftest import confirmed_order, events_messages, make_due, send_due, subscribe
from tests.metrics.conftest import parse_samples, value

pytestmark = pytest.mark.django_db

LAG = "oms_webhook_delivery_lag_seconds"


def lag_samples(subscription: str) -> dict[str, float]:
    """The subscription's lag histogram: its count, sum and a few cumulative buckets."""
    samples = parse_samples(metrics_text().decode())
    return {
        "count": value(samples, f"{LAG}_count", subscription=subscription),
        "sum": value(samples, f"{LAG}_sum", subscription=subscription),
        **{
            f"le={bound}": value(samples, f"{LAG}_bucket", subscription=subscription, le=bound)
            for bound in ("30.0", "60.0", "+Inf")
        },
    }


def test_each_delivered_event_observes_its_lag_since_creation(
    receiver, django_capture_on_commit_callbacks
):
    # Given two events of an order that were created 45 s ago (the subscription is older)
    subscription = subscribe(receiver.url("/crm"), name="lag-crm")
    EventSubscription.objects.filter(pk=subscription.pk).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    order = confirmed_order()
    OrderEvent.objects.filter(order=order).update(
        occurred_at=timezone.now() - timedelta(seconds=45)
    )
    before = lag_samples("lag-crm")

    # When both are delivered (the observation counts once the delivery commits)
    with django_capture_on_commit_callbacks(execute=True):
        for message in events_messages(order):
            outbox_handle(message.pk)

    # Then each one's lag is between 45 s and a minute
    after = lag_samples("lag-crm")
    assert len(receiver.on("/crm")) == 2
    assert after["count"] - before["count"] == 2
    assert after["le=+Inf"] - before["le=+Inf"] == 2
    assert after["le=60.0"] - before["le=60.0"] == 2
    assert after["le=30.0"] - before["le=30.0"] == 0
    assert 90 <= after["sum"] - before["sum"] < 120


def test_failed_attempts_observe_nothing_until_the_retry_delivers(
    receiver, django_capture_on_commit_callbacks
):
    # Given a subscriber that answers 500 to the first attempt
    subscription = subscribe(receiver.url("/flaky"), name="lag-flaky")
    receiver.fail_next["/flaky"] = 1
    order = confirmed_order()
    before = lag_samples("lag-flaky")

    with django_capture_on_commit_callbacks(execute=True):
        for message in events_messages(order):
            outbox_handle(message.pk)
    failed = lag_samples("lag-flaky")

    # When the retry is due and goes out
    with django_capture_on_commit_callbacks(execute=True):
        make_due(subscription)
        send_due()

    # Then only the delivered events were observed, once each
    assert failed["count"] == before["count"]
    assert EventDelivery.objects.filter(subscription=subscription, status="delivered").count() == 2
    assert lag_samples("lag-flaky")["count"] - before["count"] == 2
