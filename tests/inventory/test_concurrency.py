"""Stock under concurrent checkouts: never oversold, never deadlocked.

Every request runs on its own thread and database connection against real PostgreSQL
(live_server for HTTP, plain threads for services), released together by a barrier.
"""

import random
import uuid
from typing import Any

import pytest
import requests
from django.db.models import Sum

from core.actors import Actor
from flows.cancel import order_cancel
from flows.place import OrderLineRequest, order_place
from inventory.errors import InsufficientStock, StockConflict
from inventory.models import Reservation, StockItem, StockMovement
from inventory.services import stock_adjust, stock_buckets_set
from orders.errors import InvalidTransition
from orders.models import Order, OrderStatusChange
from orders.states import OrderStatus
from tests.conftest import api_key_for, assert_stock_consistent, order_payload, stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory

PROBLEM_JSON = "application/problem+json"
CHECKOUTS = 50
ADDRESS = order_payload([])["shipping_address"]


def token_headers(user: Any, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key_for(user)}", "Idempotency-Key": key}


def checkout(url: str, headers: dict[str, str], lines: list[tuple[str, int]]) -> Any:
    return requests.post(url, json=order_payload(lines), headers=headers, timeout=120)


def split_into_buckets(products: list[Any], buckets: int) -> list[StockItem]:
    """Split every stock item of the products over `buckets` rows; return all rows."""
    if buckets > 1:
        for item in StockItem.objects.filter(product__in=products).select_related(
            "product", "warehouse"
        ):
            stock_buckets_set(
                sku=item.product.sku,
                warehouse_code=item.warehouse.code,
                buckets=buckets,
                actor=Actor.system(),
            )
    return list(StockItem.objects.filter(product__in=products))


def ten_units_over_two_warehouses(buckets: int = 1) -> tuple[Any, list[StockItem]]:
    product = ProductFactory()
    stock_receive(product, WarehouseFactory(priority=1), 6)
    stock_receive(product, WarehouseFactory(priority=0), 4)
    return product, split_into_buckets([product], buckets)


def held_quantity(**filters: Any) -> int:
    return (
        Reservation.objects.filter(status=Reservation.Status.HELD, **filters).aggregate(
            total=Sum("quantity")
        )["total"]
        or 0
    )


def assert_rejected_for_stock(response: Any) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert response.json()["code"] == "insufficient_stock"


def assert_orders_fully_reserved() -> None:
    for order in Order.objects.prefetch_related("lines"):
        for line in order.lines.all():
            assert held_quantity(order_line=line) == line.quantity, order


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("buckets", [1, 4])
def test_concurrent_checkouts_never_oversell(burst_live_server, concurrently, buckets):
    # Given 10 units over two warehouses and 50 customers
    product, items = ten_units_over_two_warehouses(buckets)
    url = f"{burst_live_server.url}/api/v1/orders/"
    headers = [token_headers(UserFactory(), f"checkout-{i}") for i in range(CHECKOUTS)]

    # When each asks for one unit at the same moment
    responses = concurrently([lambda h=h: checkout(url, h, [(product.sku, 1)]) for h in headers])

    # Then exactly ten succeed and the rest are told the stock ran out
    assert not [r for r in responses if isinstance(r, BaseException)], responses
    assert all(r.status_code != 500 for r in responses)
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 10
    for response in responses:
        if response.status_code != 201:
            assert_rejected_for_stock(response)
    assert all(r.json()["status"] == OrderStatus.PENDING_PAYMENT for r in created)
    assert Order.objects.count() == 10
    assert held_quantity() == 10
    assert StockItem.objects.filter(product=product).aggregate(total=Sum("reserved"))["total"] == 10
    assert_orders_fully_reserved()
    assert_stock_consistent([item.pk for item in items])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("buckets", [1, 4])
def test_concurrent_checkouts_of_random_quantities_never_oversell(
    burst_live_server, concurrently, buckets
):
    # Given 10 units over two warehouses
    product, items = ten_units_over_two_warehouses(buckets)
    url = f"{burst_live_server.url}/api/v1/orders/"
    rng = random.Random(20240601)
    wanted = [rng.randint(1, 3) for _ in range(CHECKOUTS)]
    headers = [token_headers(UserFactory(), f"checkout-{i}") for i in range(CHECKOUTS)]

    # When 50 checkouts of 1-3 units run at once
    responses = concurrently(
        [
            lambda h=h, q=q: checkout(url, h, [(product.sku, q)])
            for h, q in zip(headers, wanted, strict=True)
        ]
    )

    # Then every order is fully reserved or not created, and never more than 10 units
    assert not [r for r in responses if isinstance(r, BaseException)], responses
    created_units = 0
    for response, quantity in zip(responses, wanted, strict=True):
        if response.status_code == 201:
            assert response.json()["lines"][0]["quantity"] == quantity
            created_units += quantity
        else:
            assert_rejected_for_stock(response)
    assert 0 < created_units <= 10
    assert Order.objects.count() == sum(r.status_code == 201 for r in responses)
    assert held_quantity() == created_units
    assert (
        StockItem.objects.filter(product=product).aggregate(total=Sum("reserved"))["total"]
        == created_units
    )
    assert_orders_fully_reserved()
    assert_stock_consistent([item.pk for item in items])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("buckets", [1, 4])
def test_concurrent_multi_sku_checkouts_in_opposite_line_orders_do_not_deadlock(
    concurrently, buckets
):
    # Given three SKUs split over two warehouses, less stock than all orders want
    products = [ProductFactory() for _ in range(3)]
    warehouses = [WarehouseFactory(priority=1), WarehouseFactory(priority=0)]
    for product in products:
        for warehouse in warehouses:
            stock_receive(product, warehouse, 12)
    items = split_into_buckets(products, buckets)
    customers = [UserFactory() for _ in range(30)]

    def place_then_maybe_cancel(index: int) -> Order:
        # Alternate the line order; every third checkout cancels right away, so
        # releases lock the same rows as the reservations running beside them.
        skus = [p.sku for p in products]
        if index % 2:
            skus.reverse()
        actor = Actor(user=customers[index])
        order = order_place(
            customer=customers[index],
            email="buyer@example.com",
            shipping_address=ADDRESS,
            lines=[OrderLineRequest(sku, 1 + index % 2) for sku in skus],
            actor=actor,
        )
        if index % 3 == 0:
            order = order_cancel(order_id=order.pk, actor=actor, reason="changed mind")
        return order

    # When 30 of them run at once
    results = concurrently([lambda i=i: place_then_maybe_cancel(i) for i in range(30)])

    # Then each either succeeded or found the stock short: no deadlock, no error
    unexpected = [r for r in results if not isinstance(r, Order | InsufficientStock)]
    assert not unexpected, unexpected
    placed = [r for r in results if isinstance(r, Order)]
    assert placed
    assert any(isinstance(r, InsufficientStock) for r in results)
    for order in placed:
        order.refresh_from_db()
        expected_held = (
            0
            if order.status == OrderStatus.CANCELLED
            else sum(line.quantity for line in order.lines.all())
        )
        assert held_quantity(order_line__order=order) == expected_held
    assert_stock_consistent([item.pk for item in items])


@pytest.mark.django_db(transaction=True)
def test_concurrent_adjustments_and_checkouts_keep_reserved_within_on_hand(concurrently):
    # Given one SKU with 20 units in one warehouse
    product = ProductFactory()
    warehouse = WarehouseFactory()
    item = stock_receive(product, warehouse, 20)
    customers = [UserFactory() for _ in range(15)]

    def buy(index: int) -> Order:
        return order_place(
            customer=customers[index],
            email="buyer@example.com",
            shipping_address=ADDRESS,
            lines=[OrderLineRequest(product.sku, 2)],
            actor=Actor(user=customers[index]),
        )

    def write_off() -> StockItem:
        return stock_adjust(
            sku=product.sku,
            warehouse_code=warehouse.code,
            quantity=-3,
            reason="damaged",
            actor=Actor.system(),
        )

    # When checkouts and write-offs race for the same units
    calls = [lambda i=i: buy(i) for i in range(15)] + [write_off for _ in range(10)]
    results = concurrently(calls)

    # Then each is applied whole or refused with a domain error, never an integrity error
    allowed = Order | StockItem | InsufficientStock | StockConflict
    unexpected = [r for r in results if not isinstance(r, allowed)]
    assert not unexpected, unexpected
    item.refresh_from_db()
    written_off = 3 * sum(isinstance(r, StockItem) for r in results[15:])
    assert item.on_hand == 20 - written_off
    assert item.reserved == 2 * sum(isinstance(r, Order) for r in results)
    assert_stock_consistent([item.pk])


@pytest.mark.django_db(transaction=True)
def test_concurrent_cancels_with_different_keys_release_stock_once(burst_live_server, concurrently):
    # Given a placed order holding 4 units
    product, items = ten_units_over_two_warehouses()
    customer = UserFactory()
    order = order_place(
        customer=customer,
        email="buyer@example.com",
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(product.sku, 4)],
        actor=Actor(user=customer),
    )
    url = f"{burst_live_server.url}/api/v1/orders/{order.pk}/cancel/"

    # When 20 cancels with different keys arrive at once
    def cancel(key: str) -> Any:
        return requests.post(
            url, json={"reason": "race"}, headers=token_headers(customer, key), timeout=120
        )

    keys = [f"cancel-{uuid.uuid4()}" for _ in range(20)]
    responses = concurrently([lambda k=k: cancel(k) for k in keys])

    # Then one cancels; the others see the order already cancelled
    assert not [r for r in responses if isinstance(r, BaseException)], responses
    assert sum(r.status_code == 200 for r in responses) == 1
    for response in responses:
        if response.status_code != 200:
            assert response.status_code == 409, response.text
            assert response.headers["Content-Type"].startswith(PROBLEM_JSON)
            assert response.json()["code"] == InvalidTransition.code
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert OrderStatusChange.objects.filter(order=order, transition="cancel").count() == 1
    assert StockMovement.objects.filter(kind=StockMovement.Kind.RELEASE).count() == (
        Reservation.objects.filter(order_line__order=order).count()
    )
    assert held_quantity() == 0
    assert_stock_consistent([item.pk for item in items])
