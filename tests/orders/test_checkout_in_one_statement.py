"""Checkout written as one statement (flows.place.order_place_written, the function
oms_checkout_write): it writes what the general path (order_place under the key's
transaction) writes, keeps stock from being oversold, re-plans after a lost race,
replays a repeated Idempotency-Key, and leaves every case it does not cover, and every
error, to the general path."""

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from core.actors import Actor
from core.idempotency import IdempotencyContext, idempotent_execute
from core.models import IdempotencyKey, OutboxMessage
from events.models import EventSubscription
from events.topic_cache import topics_with_subscribers_forget
from flows import place as place_module
from flows.api.serializers import OrderOutputSerializer
from flows.place import OrderLineRequest, order_place, order_place_written
from inventory.models import Reservation, StockItem, StockMovement
from orders.models import Order, OrderEvent, OrderLine, OrderStatusChange
from tests.conftest import (
    assert_stock_consistent,
    new_idempotency_key,
    order_payload,
    run_concurrently,
    stock_receive,
    token_client,
)
from tests.factories import ProductFactory, UserFactory, WarehouseFactory

ADDRESS = order_payload([])["shipping_address"]
PATH = "/api/v1/orders/"
WRITE_CALL = "SELECT oms_checkout_write("


def render(order: Any) -> dict[str, Any]:
    return OrderOutputSerializer().to_representation(order)


def checkout_keyed(
    customer: User, lines: list[tuple[str, int]], *, key: str, one_statement: bool
) -> Any:
    """The API's checkout without a payment method (flows.api.views), with or without
    its single-statement form."""
    arguments: dict[str, Any] = {
        "customer": customer,
        "email": "buyer@example.com",
        "shipping_address": dict(ADDRESS),
        "lines": [OrderLineRequest(sku, quantity) for sku, quantity in lines],
        "actor": Actor(user=customer, request_id="req-1"),
    }

    def general(context: IdempotencyContext) -> tuple[int, Any]:
        return 201, render(order_place(**arguments))

    return idempotent_execute(
        user=customer,
        key=key,
        method="POST",
        path=PATH,
        payload=order_payload(lines),
        operation=general,
        written=(
            (lambda completed: order_place_written(**arguments, key=completed, render=render))
            if one_statement
            else None
        ),
    )


def rows_of(order_id: Any) -> dict[str, Any]:
    """Everything a checkout wrote for the order, without ids, numbers and times."""
    order = Order.objects.get(pk=order_id)
    lines = list(OrderLine.objects.filter(order=order).order_by("pk"))
    reservations = list(Reservation.objects.filter(order_line__order=order).order_by("pk"))
    key = IdempotencyKey.objects.get(response_body__id=str(order.pk))
    event = OrderEvent.objects.get(order=order)
    event_order = {
        field: value
        for field, value in event.data["order"].items()
        if field not in ("id", "number", "created_at", "updated_at", "reservation_expires_at")
    }
    body = {
        field: value
        for field, value in key.response_body.items()
        if field not in ("id", "number", "created_at", "updated_at", "reservation_expires_at")
    }
    return {
        "order": model_to_dict(order, exclude=["id", "number", "reservation_expires_at"]),
        "expires_after_created": round(
            (order.reservation_expires_at - order.created_at).total_seconds()
        ),
        "lines": [model_to_dict(line, exclude=["id", "order"]) for line in lines],
        "audit": [
            model_to_dict(change, exclude=["id", "order", "created_at"])
            for change in OrderStatusChange.objects.filter(order=order)
        ],
        "event": {
            "sequence": event.sequence,
            "type": event.type,
            "api_version": event.api_version,
            "change": event.data["change"],
            "order": event_order,
            "txid_is_set": event.txid > 0,
        },
        "reservations": [
            (r.stock_item_id, r.quantity, r.status, r.expires_at == order.reservation_expires_at)
            for r in reservations
        ],
        "ledger": [
            (
                m.stock_item_id,
                m.kind,
                m.on_hand_delta,
                m.reserved_delta,
                m.reason,
                m.actor_id,
                m.request_id,
            )
            for m in StockMovement.objects.filter(reservation__in=reservations).order_by("pk")
        ],  # fmt: skip
        "key": {
            "fields": model_to_dict(
                key, fields=["user", "request_method", "request_path", "status", "locked_at"]
            ),
            "resource_id": key.resource_id,
            "response_status": key.response_status,
            "body": body,
        },
    }


def placed_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("oms_orders_placed_total", {"outcome": outcome}) or 0.0


def reserved_by_item() -> dict[int, int]:
    return dict(StockItem.objects.values_list("pk", "reserved"))


@pytest.mark.django_db
def test_the_statement_writes_what_the_general_path_writes():
    # Given two products stocked in two warehouses
    first, second = ProductFactory(price=1250), ProductFactory(price=399)
    near, far = WarehouseFactory(priority=0), WarehouseFactory(priority=1)
    for product in (first, second):
        stock_receive(product, near, 3)
        stock_receive(product, far, 20)
    customer = UserFactory()
    lines = [(first.sku, 5), (second.sku, 2)]

    # When the same checkout runs through the general path, then through the statement
    before = reserved_by_item()
    general = checkout_keyed(customer, lines, key=new_idempotency_key(), one_statement=False)
    after_general = reserved_by_item()
    with CaptureQueriesContext(connection) as captured:
        written = checkout_keyed(customer, lines, key=new_idempotency_key(), one_statement=True)
    after_written = reserved_by_item()

    # Then the statement ran, and both wrote the same rows apart from ids and times
    assert [q for q in captured.captured_queries if q["sql"].startswith(WRITE_CALL)]
    assert general.status == written.status == 201
    assert not general.replayed
    assert not written.replayed
    assert rows_of(written.body["id"]) == rows_of(general.body["id"])
    # ... took the same units from the same stock rows
    general_delta = {pk: after_general[pk] - before[pk] for pk in before}
    written_delta = {pk: after_written[pk] - after_general[pk] for pk in before}
    assert general_delta == written_delta
    assert sum(general_delta.values()) == 7
    # ... and answered alike (the body is what the key stores)
    assert {k: v for k, v in written.body.items() if k not in ("id", "number")} | {
        "created_at": None,
        "updated_at": None,
        "reservation_expires_at": None,
    } == {k: v for k, v in general.body.items() if k not in ("id", "number")} | {
        "created_at": None,
        "updated_at": None,
        "reservation_expires_at": None,
    }
    assert IdempotencyKey.objects.get(response_body__id=written.body["id"]).response_body == (
        written.body
    )
    assert_stock_consistent()


@pytest.mark.django_db
def test_the_api_checkout_is_one_write_statement_and_counts_once():
    # Given a stocked product
    product = ProductFactory()
    stock_receive(product, WarehouseFactory(), 10)
    client = token_client(UserFactory())
    before = placed_count("created")

    # When it is checked out through the API
    with CaptureQueriesContext(connection) as captured:
        response = client.post(
            PATH, order_payload([(product.sku, 2)]), format="json",
            HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
        )  # fmt: skip

    # Then one statement wrote it, and the checkout was counted once
    assert response.status_code == 201, response.json()
    calls = [q["sql"] for q in captured.captured_queries if q["sql"].startswith(WRITE_CALL)]
    assert len(calls) == 1
    assert placed_count("created") == before + 1
    assert Order.objects.get(pk=response.json()["id"]).lines.get().quantity == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setup", "lines", "status", "code"),
    [
        ("unknown", [("NOPE-1", 1)], 422, "unknown_sku"),
        ("short", None, 409, "insufficient_stock"),
        ("currencies", None, 422, "currency_mismatch"),
    ],
)
def test_an_error_is_reported_by_the_general_path_once(setup, lines, status, code):
    # Given a product with 1 unit, and one priced in another currency
    product = ProductFactory(currency="EUR")
    stock_receive(product, WarehouseFactory(), 1)
    other = ProductFactory(currency="USD")
    stock_receive(other, WarehouseFactory(), 5)
    if lines is None:
        lines = [(product.sku, 2)] if setup == "short" else [(product.sku, 1), (other.sku, 1)]
    client = token_client(UserFactory())
    before = placed_count(code)
    key = new_idempotency_key()

    # When the checkout fails, and is repeated with the same key
    response = client.post(PATH, order_payload(lines), format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = client.post(PATH, order_payload(lines), format="json", HTTP_IDEMPOTENCY_KEY=key)

    # Then the problem is the general path's, counted once, stored and replayed
    assert response.status_code == status, response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert placed_count(code) == before + 1
    assert again.status_code == status
    assert again.json() == response.json()
    assert again["Idempotent-Replayed"] == "true"
    assert not Order.objects.exists()
    assert_stock_consistent()


@pytest.mark.django_db
def test_a_repeated_key_replays_the_first_response_and_creates_nothing():
    # Given a checkout placed through the statement
    product = ProductFactory()
    stock_receive(product, WarehouseFactory(), 10)
    client = token_client(UserFactory())
    key = new_idempotency_key()
    payload = order_payload([(product.sku, 1)])
    first = client.post(PATH, payload, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == 201

    # When it is sent again with the same key
    with CaptureQueriesContext(connection) as captured:
        again = client.post(PATH, payload, format="json", HTTP_IDEMPOTENCY_KEY=key)

    # Then the statement found the key taken, and the first response is replayed
    assert [q for q in captured.captured_queries if q["sql"].startswith(WRITE_CALL)]
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1
    assert StockItem.objects.get().reserved == 1
    # ... and another payload under that key is a conflict, as always
    other = client.post(
        PATH, order_payload([(product.sku, 2)]), format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


@pytest.mark.django_db
def test_a_lost_race_replans_from_the_fullest_rows(monkeypatch):
    # Given a product with units in two warehouses, the near one (higher priority) planned
    # first
    product = ProductFactory()
    near, far = WarehouseFactory(priority=1), WarehouseFactory(priority=0)
    near_item = stock_receive(product, near, 2)
    stock_receive(product, far, 5)
    customer, rival = UserFactory(), UserFactory()
    real_write = place_module.checkout_write
    attempts: list[list[int]] = []

    def rival_takes_the_near_units_first(checkout: dict[str, Any]) -> None:
        attempts.append([row["stock_item_id"] for row in checkout["stock"]["plan"]])
        if len(attempts) == 1:
            order_place(
                customer=rival,
                email="rival@example.com",
                shipping_address=ADDRESS,
                lines=[OrderLineRequest(product.sku, 2)],
                actor=Actor(user=rival),
            )
        real_write(checkout)

    monkeypatch.setattr(place_module, "checkout_write", rival_takes_the_near_units_first)

    # When the checkout's write finds its planned units gone
    result = checkout_keyed(customer, [(product.sku, 2)], key="race-1", one_statement=True)

    # Then it re-planned and took the far units, and the lost attempt left nothing
    assert result.status == 201
    assert attempts[0] == [near_item.pk]
    assert len(attempts) == 2
    assert near_item.pk not in attempts[1]
    order = Order.objects.get(pk=result.body["id"])
    held = Reservation.objects.filter(order_line__order=order).select_related("stock_item")
    assert {reservation.stock_item.warehouse_id for reservation in held} == {far.pk}
    assert Order.objects.count() == 2
    assert IdempotencyKey.objects.filter(key="race-1").count() == 1
    assert_stock_consistent()


@pytest.mark.django_db
def test_cases_the_statement_does_not_cover_take_the_general_path():
    # Given a product with a low-stock threshold and one that allows backorders
    warehouse = WarehouseFactory()
    watched = ProductFactory(low_stock_threshold=5)
    stock_receive(watched, warehouse, 6)
    backordered = ProductFactory(backorder_limit=3)
    stock_receive(backordered, warehouse, 1)
    client = token_client(UserFactory())

    for lines, event_types in (
        ([(watched.sku, 2)], ["order.created", "stock.low"]),
        ([(backordered.sku, 3)], ["order.created"]),
    ):
        # When each is checked out through the API
        with CaptureQueriesContext(connection) as captured:
            response = client.post(
                PATH, order_payload(lines), format="json",
                HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
            )  # fmt: skip

        # Then the general path wrote it, with what only it writes
        assert response.status_code == 201, response.json()
        assert not [q for q in captured.captured_queries if q["sql"].startswith(WRITE_CALL)]
        order = Order.objects.get(pk=response.json()["id"])
        assert [e.type for e in OrderEvent.objects.filter(order=order).order_by("sequence")] == (
            event_types
        )
    backordered.refresh_from_db()
    assert backordered.backordered == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_checkouts_for_the_last_units_never_oversell():
    # Given 5 units split over two warehouses, and 12 customers wanting one each
    product = ProductFactory()
    stock_receive(product, WarehouseFactory(priority=0), 3)
    stock_receive(product, WarehouseFactory(priority=1), 2)
    customers = [UserFactory() for _ in range(12)]

    # When they check out at once through the statement
    results = run_concurrently(
        [
            lambda customer=customer: checkout_keyed(
                customer, [(product.sku, 1)], key=f"last-{uuid.uuid4().hex}", one_statement=True
            )
            for customer in customers
        ]
    )

    # Then exactly 5 got a unit, the others insufficient_stock, and nothing is oversold
    placed = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(placed) == 5, results
    assert all(getattr(error, "code", None) == "insufficient_stock" for error in failed), failed
    assert sum(StockItem.objects.values_list("reserved", flat=True)) == 5
    assert Order.objects.count() == 5
    assert_stock_consistent()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_place_one_order():
    # Given a stocked product and a customer
    product = ProductFactory()
    stock_receive(product, WarehouseFactory(), 10)
    customer = UserFactory()

    # When four requests with the same key run at once
    results = run_concurrently(
        [
            lambda: checkout_keyed(customer, [(product.sku, 1)], key="same", one_statement=True)
            for _ in range(4)
        ]
    )

    # Then one order was placed, and every request answered with its body
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert Order.objects.count() == 1
    assert {r.body["id"] for r in results} == {str(Order.objects.get().pk)}
    assert sorted(r.replayed for r in results) == [False, True, True, True]
    assert StockItem.objects.get().reserved == 1
    assert_stock_consistent()


@pytest.mark.django_db
def test_with_a_webhook_subscriber_the_statement_writes_the_events_outbox_message():
    # Given a subscription to every event, and a stocked product
    topics_with_subscribers_forget()
    EventSubscription.objects.create(
        name="all", url="http://127.0.0.1:9/hook", secret="secret-all", topics=["*"]
    )
    product = ProductFactory()
    stock_receive(product, WarehouseFactory(), 10)
    customer = UserFactory()
    try:
        # When the same checkout runs through the general path and through the statement
        general = checkout_keyed(customer, [(product.sku, 1)], key="hook-1", one_statement=False)
        with CaptureQueriesContext(connection) as captured:
            written = checkout_keyed(customer, [(product.sku, 1)], key="hook-2", one_statement=True)
    finally:
        topics_with_subscribers_forget()

    # Then the statement ran, and each wrote the event's one outbox message alike
    assert [q for q in captured.captured_queries if q["sql"].startswith(WRITE_CALL)]

    def message_of(body: dict[str, Any]) -> dict[str, Any]:
        event = OrderEvent.objects.get(order_id=body["id"])
        message = OutboxMessage.objects.get(payload__order_id=body["id"])
        assert message.payload == {
            "event_id": str(event.id),
            "order_id": body["id"],
            "type": "order.created",
        }
        assert message.dedup_key == f"{message.handler}:order-event-{event.id}"
        return model_to_dict(
            message, fields=["topic", "handler", "queue", "status", "attempts", "request_id"]
        )

    assert message_of(written.body) == message_of(general.body)
    assert message_of(written.body)["topic"] == "order_event.order.created"
