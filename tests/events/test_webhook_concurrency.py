"""Two workers delivering one subscription's events at once, each on its own database
connection, against a slow real receiver: each order's events still arrive one at a
time, in sequence, each exactly once."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from events.models import EventDelivery
from events.services import deliveries_due, event_redeliver, order_deliveries_send
from orders.models import OrderEvent
from tests.events.conftest import confirmed_order, payment_captured, subscribe

ORDERS = 4
WORKERS = 2


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_keep_each_orders_events_in_sequence(receiver):
    # Given orders of three events each, queued for a slow subscriber
    start = timezone.now() - timedelta(seconds=1)
    orders = [confirmed_order() for _ in range(ORDERS)]
    for order in orders:
        payment_captured(order)
    subscription = subscribe(receiver.url("/slow"), name="slow")
    queued = event_redeliver(subscription_id=subscription.pk, since=start)
    assert queued == 3 * ORDERS
    receiver.delay = 0.03
    pairs = deliveries_due()
    assert len(pairs) == ORDERS

    # When two workers go through every order at once, in opposite orders
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def worker(reverse: bool) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                for subscription_id, order_id in reversed(pairs) if reverse else pairs:
                    order_deliveries_send(subscription_id=subscription_id, order_id=order_id)
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n % 2 == 1,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # Then no order was ever posted twice at once, and each arrived once, in sequence
    assert errors == []
    assert receiver.overlaps == 0
    by_order: dict[str, list[int]] = {}
    for request in receiver.on("/slow"):
        by_order.setdefault(request.event["order_id"], []).append(request.event["sequence"])
    assert by_order == {str(order.pk): [1, 2, 3] for order in orders}
    ids = [request.event["id"] for request in receiver.on("/slow")]
    assert sorted(ids) == sorted(str(i) for i in OrderEvent.objects.values_list("id", flat=True))
    assert set(EventDelivery.objects.values_list("status", flat=True)) == {"delivered"}
