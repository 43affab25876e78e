"""Shared fixtures. Tests run against real PostgreSQL (config.settings.test)."""

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.actors import Actor
from inventory.models import Product, StockItem, Warehouse
from inventory.services import stock_adjust
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory

_keys = itertools.count()


def token_client(user: Any) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
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
