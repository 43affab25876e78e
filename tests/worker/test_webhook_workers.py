"""Two real Celery worker processes on a private Redis deliver events at the same time
to a slow receiver: each order's events still arrive one at a time, in sequence, once.

The races themselves are forced in tests/events/test_order_events (an order's messages handled last
first) and tests/events/test_webhook_concurrency (two threads on one order's deliveries); here the
whole path runs as deployed: commit, outbox, broker, workers, HTTP."""

import pytest
from django.db import transaction

from events.models import EventDelivery
from orders.models import OrderEvent
from tests.events.conftest import confirmed_order, payment_captured, subscribe
from tests.support.worker import wait_for

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.webhook_receiver",
)

ORDERS = 3


@pytest.mark.django_db(transaction=True)
def test_two_workers_deliver_each_orders_events_once_in_sequence(receiver, start_worker):
    # Given two workers and a subscriber that answers slowly
    first, second = start_worker(), start_worker()
    subscribe(receiver.url("/slow"), name="slow")
    receiver.delay = 0.05

    # When orders are created, confirmed and captured, each in one transaction: its
    # three messages reach the broker together and the two workers take them at once
    orders = []
    for _ in range(ORDERS):
        with transaction.atomic():
            orders.append(confirmed_order())
            payment_captured(orders[-1])

    # Then every event arrives once, each order in sequence, never two of one at once
    wait_for(
        lambda: EventDelivery.objects.filter(status="delivered").count() == 3 * ORDERS,
        what="every event delivered",
        worker=first,
    )
    assert second.alive
    # ...both of them having handled some of it
    assert all(
        "oms.core.outbox_handle" in w.log() and "succeeded" in w.log() for w in (first, second)
    )
    requests = receiver.on("/slow")
    by_order: dict[str, list[int]] = {}
    for request in requests:
        by_order.setdefault(request.event["order_id"], []).append(request.event["sequence"])
    assert by_order == {str(order.pk): [1, 2, 3] for order in orders}
    assert sorted(r.event["id"] for r in requests) == sorted(
        str(i) for i in OrderEvent.objects.values_list("id", flat=True)
    )
    assert receiver.overlaps == 0
