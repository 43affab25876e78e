"""Shared fixtures. Tests run against real PostgreSQL (config.settings.test)."""

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections
from django.db.models import Sum
from rest_framework.test import APIClient

from access.scopes import ALL_SCOPES
from access.services import api_key_create
from core.actors import Actor
from inventory.models import Product, Reservation, StockItem, Warehouse
from inventory.selectors import stock_ledger_totals
from inventory.services import stock_adjust
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory

_keys = itertools.count()


def api_key_for(user: Any, *, scopes: Any = ALL_SCOPES, **fields: Any) -> str:
    """A new API key of the user (every scope unless told); its plaintext."""
    return api_key_create(
        user=user, name="test", scopes=list(scopes), actor=Actor.system(), **fields
    ).key


def token_client(user: Any, **key_fields: Any) -> APIClient:
    """A client that sends a new API key of the user (Authorization: Bearer)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(user, **key_fields)}")
    return client


@pytest.fixture
def customer(db: None) -> Any:
    return UserFactory()


@pytest.fixture
def other_customer(db: None) -> Any:
    return UserFactory()


@pytest.fixture
def staff(db: None) -> Any:
    return StaffFactory()


@pytest.fixture
def customer_client(customer: Any) -> APIClient:
    return token_client(customer)


@pytest.fixture
def other_customer_client(other_customer: Any) -> APIClient:
    return token_client(other_customer)


@pytest.fixture
def staff_client(staff: Any) -> APIClient:
    return token_client(staff)


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()


def stock_receive(product: Product, warehouse: Warehouse, quantity: int) -> StockItem:
    """Put units on hand through the service, so the ledger agrees with the counters."""
    return stock_adjust(
        sku=product.sku,
        warehouse_code=warehouse.code,
        quantity=quantity,
        reason="test receipt",
        actor=Actor.system(),
    )


@pytest.fixture
def stocked_product(db: None) -> Callable[..., Product]:
    """Make a product with stock: stocked_product(quantities={"wh-a": 5}, price=1000)."""

    def make(quantities: dict[str, int] | None = None, **product_fields: Any) -> Product:
        product = ProductFactory(**product_fields)
        for code, quantity in (quantities or {"main": 10}).items():
            warehouse = Warehouse.objects.filter(code=code).first() or WarehouseFactory(code=code)
            stock_receive(product, warehouse, quantity)
        return product

    return make


def order_payload(lines: list[tuple[str, int]], **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "email": "buyer@example.com",
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "1 Analytical Way",
            "line2": "",
            "city": "London",
            "postal_code": "N1 9GU",
            "country": "GB",
        },
    }
    payload.update(overrides)
    return payload


def new_idempotency_key() -> str:
    return f"test-key-{next(_keys)}"


@pytest.fixture
def place_order() -> Callable[..., Any]:
    """POST /api/v1/orders/ with a fresh Idempotency-Key; return the response."""

    def place(client: APIClient, lines: list[tuple[str, int]], key: str | None = None) -> Any:
        return client.post(
            "/api/v1/orders/",
            order_payload(lines),
            format="json",
            HTTP_IDEMPOTENCY_KEY=key or new_idempotency_key(),
        )

    return place


def run_concurrently(calls: list[Callable[[], Any]], *, timeout: float = 120) -> list[Any]:
    """Start every call at once, each in its own thread (so its own DB connection).

    Return each call's result in order; a call that raised returns its exception. Every
    thread closes its database connections before it ends.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[index] = call()
        except BaseException as error:
            results[index] = error
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(index, call), daemon=True)
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a concurrent call hung"
    return results


@pytest.fixture
def concurrently() -> Callable[..., list[Any]]:
    """run_concurrently as a fixture: concurrently([lambda: ..., ...])."""
    return run_concurrently


def assert_stock_consistent(stock_item_ids: list[int] | None = None) -> None:
    """Every stock item keeps 0 <= reserved <= on_hand, reserved equals its held
    reservations, and the ledger re-derives both counters."""
    items = StockItem.objects.all()
    if stock_item_ids is not None:
        items = items.filter(pk__in=stock_item_ids)
    ledger = stock_ledger_totals()
    held = dict(
        Reservation.objects.filter(status=Reservation.Status.HELD)
        .values("stock_item_id")
        .annotate(total=Sum("quantity"))
        .values_list("stock_item_id", "total")
    )
    for item in items:
        assert 0 <= item.reserved <= item.on_hand, item
        assert item.reserved == held.get(item.pk, 0), item
        assert ledger.get(item.pk, (0, 0)) == (item.on_hand, item.reserved), item


@pytest.fixture
def burst_live_server(live_server: Any) -> Any:
    """live_server that accepts a burst of simultaneous connections.

    Django's test server listens with a backlog of 10; with SYN cookies on, a burst
    beyond that gets connections reset before a request is even read. Listening again
    on the bound socket only widens the backlog.
    """
    live_server.thread.httpd.socket.listen(256)
    return live_server
