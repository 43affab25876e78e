"""GET /api/v1/events/: every order's events in commit order from a cursor, never
skipping an event whose transaction committed late; retention."""

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from core.actors import Actor
from events.services import order_events_purge
from flows.lock_objects import order_lock
from flows.place import OrderLineRequest, order_place
from orders.audit import order_event_record
from orders.models import OrderEvent, OrderStatusChange
from tests.conftest import api_key_for, stock_receive
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory

FEED = "/api/v1/events/"


def checkout(product: Any, quantity: int = 1) -> Any:
    return order_place(
        customer=UserFactory(),
        email="ada@example.com",
        shipping_address={
            "name": "Ada",
            "line1": "1 Way",
            "city": "London",
            "postal_code": "N1",
            "country": "GB",
        },
        lines=[OrderLineRequest(product.sku, quantity)],
        actor=Actor.system(),
    )


def place_orders(count: int) -> list[Any]:
    product = ProductFactory(price=100)
    stock_receive(product, WarehouseFactory(), 1000)
    return [checkout(product) for _ in range(count)]


def read_all(
    client: Any, *, after: str | None = None, limit: int = 2, until: int = 0, **params: str
) -> Any:
    """Follow next_cursor until a page comes back empty (and, with `until`, at least that
    many events were read: a transaction anywhere on the shared PostgreSQL server holds
    the feed back while it runs); return (events, last cursor)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while True:
        query = {"limit": str(limit), **params, **({"after": after} if after else {})}
        response = client.get(FEED, query)
        assert response.status_code == 200, response.json()
        page = response.json()
        events += page["events"]
        if not page["events"]:
            if len(events) >= until or time.monotonic() > deadline:
                return events, page["next_cursor"]
            time.sleep(0.05)
            continue
        after = page["next_cursor"]


@pytest.mark.django_db(transaction=True)
def test_the_feed_pages_through_every_event_once_in_order(staff_client):
    orders = place_orders(3)

    events, cursor = read_all(staff_client, limit=2, until=3)

    assert [e["order_id"] for e in events] == [str(o.pk) for o in orders]
    assert {e["type"] for e in events} == {"order.created"}
    assert cursor == events[-1]["cursor"]
    # Nothing new: the same cursor comes back with no events.
    again = staff_client.get(FEED, {"after": cursor}).json()
    assert (again["events"], again["next_cursor"]) == ([], cursor)


@pytest.mark.django_db(transaction=True)
def test_the_feed_filters_by_type_and_validates_its_parameters(staff_client, customer_client):
    (order,) = place_orders(1)
    with transaction.atomic():
        locked = order_lock(order_id=order.pk)
        order_event_record(order=locked, type="payment.authorized", change={})

    events, _ = read_all(staff_client, types="payment.authorized,order.shipped", until=1)

    assert [e["type"] for e in events] == ["payment.authorized"]
    for bad in (
        {"after": "not-a-cursor"},
        {"types": "order.exploded"},
        {"limit": "0"},
        {"limit": "501"},
        {"api_version": "1999-01-01"},
        {"after": "9" * 30 + "-1"},
    ):
        response = staff_client.get(FEED, bad)
        assert response.status_code == 400, (bad, response.json())
        assert response.json()["code"] == "validation_error"
    assert customer_client.get(FEED).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_an_event_whose_transaction_commits_late_is_read_after_not_skipped(staff_client):
    # Given an order whose change is written first but committed last
    early, late = place_orders(2)
    _, start = read_all(staff_client, until=2)
    written, release = threading.Event(), threading.Event()

    def slow_change() -> None:
        try:
            with transaction.atomic():
                locked = order_lock(order_id=early.pk)
                order_event_record(order=locked, type="payment.authorized", change={})
                written.set()
                release.wait(10)
        finally:
            connections.close_all()

    slow = threading.Thread(target=slow_change)
    slow.start()
    assert written.wait(10)
    try:
        # When a later transaction commits its event first, and a consumer reads
        with transaction.atomic():
            order_event_record(
                order=order_lock(order_id=late.pk), type="payment.authorized", change={}
            )
        seen_while_open, cursor = read_all(staff_client, after=start)
    finally:
        release.set()
        slow.join(10)
    seen_after, _ = read_all(staff_client, after=cursor, until=2)

    # Then nothing is read past the open transaction, and once it commits both events
    # arrive, the early one first: none is skipped
    assert seen_while_open == []
    assert [e["order_id"] for e in seen_after] == [str(early.pk), str(late.pk)]


@pytest.mark.django_db(transaction=True)
def test_a_consumer_reading_during_concurrent_changes_sees_every_event_once():
    orders = place_orders(6)
    seen: list[str] = []

    def change(order: Any) -> None:
        try:
            for _ in range(5):
                with transaction.atomic():
                    order_event_record(
                        order=order_lock(order_id=order.pk), type="payment.refunded", change={}
                    )
        finally:
            connections.close_all()

    def consume() -> None:
        from orders.selectors import FeedCursor, order_events_feed

        after = None
        deadline = time.monotonic() + 30
        try:
            while len(seen) < 30 and time.monotonic() < deadline:
                events = order_events_feed(after=after, types=["payment.refunded"], limit=7)
                seen.extend(str(e.id) for e in events)
                if events:
                    after = FeedCursor.of(events[-1])
        finally:
            connections.close_all()

    consumer = threading.Thread(target=consume)
    consumer.start()
    writers = [threading.Thread(target=change, args=(order,)) for order in orders]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
    consumer.join(40)

    written = set(OrderEvent.objects.filter(type="payment.refunded").values_list("id", flat=True))
    assert len(written) == 30
    assert len(seen) == len(set(seen)) == 30
    assert set(seen) == {str(i) for i in written}
    for order in orders:
        sequences = list(
            OrderEvent.objects.filter(order=order)
            .order_by("sequence")
            .values_list("sequence", flat=True)
        )
        assert sequences == list(range(1, 7))


@pytest.mark.django_db
def test_events_past_the_retention_are_purged_and_the_audit_trail_stays(settings):
    (order,) = place_orders(1)
    OrderEvent.objects.update(occurred_at=timezone.now() - timedelta(days=31))

    assert order_events_purge() == 1
    assert not OrderEvent.objects.exists()
    assert OrderStatusChange.objects.filter(order=order).count() == 1


@pytest.mark.django_db
def test_a_service_account_reads_the_feed_and_nothing_else():
    service = StaffFactory(groups=["service"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(service, scopes=['events:read'])}")

    assert client.get(FEED).status_code == 200
    assert client.get("/api/v1/orders/").status_code == 403
    assert client.get("/api/v1/products/").status_code == 403


@pytest.mark.django_db
def test_a_checkout_that_takes_stock_below_its_threshold_writes_stock_low_once():
    # Given a product with 10 units and an alert below 5
    product = ProductFactory(price=100, low_stock_threshold=5)
    stock_receive(product, WarehouseFactory(), 10)

    # When checkouts take it to 6 (above), 4 (the crossing) and 2 (still below)
    above, crossing, below = checkout(product, 4), checkout(product, 2), checkout(product, 2)

    # Then only the crossing wrote stock.low, on that order, after its order.created
    low = OrderEvent.objects.filter(type="stock.low")
    assert [(e.order_id, e.sequence) for e in low] == [(crossing.pk, 2)]
    assert low.get().data["change"] == {
        "sku": product.sku,
        "available": 4,
        "threshold": 5,
        "quantity": 2,
    }
    assert not OrderEvent.objects.filter(order__in=[above, below], type="stock.low").exists()
