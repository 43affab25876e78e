"""Order edits: DE and FR rates, the payment provider of tests/payments, and the
helpers every edit test uses (place, propose, commit over HTTP; stock held)."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from inventory.models import Product, Reservation, StockItem
from pricing.models import ShippingRate, TaxRate
from tests.conftest import new_idempotency_key
from tests.payments.conftest import provider  # noqa: F401
from tests.pricing.conftest import DE_ADDRESS, checkout_post, de_rates  # noqa: F401

PRICE = 1000
FR_ADDRESS = {**DE_ADDRESS, "city": "Paris", "postal_code": "75001", "country": "FR"}


@pytest.fixture
def rates(de_rates: None) -> None:  # noqa: F811
    """DE as in tests/pricing; FR: 20% tax, shipping taxed, standard 7.00 EUR."""
    TaxRate.objects.create(country="FR", basis_points=2000, shipping_taxable=True)
    ShippingRate.objects.create(country="FR", method="standard", currency="EUR", amount=700)


@pytest.fixture
def widget(stocked_product: Any) -> Product:
    return stocked_product(quantities={"main": 10}, price=PRICE, currency="EUR")


@pytest.fixture
def gadget(stocked_product: Any) -> Product:
    return stocked_product(quantities={"main": 5}, price=2000, currency="EUR")


def place(client: APIClient, lines: list[tuple[str, int]], card: str | None = None) -> str:
    fields = {"payment_method": card} if card else {}
    response = checkout_post(client, lines, **fields)
    assert response.status_code == 201, response.json()
    order_id: str = response.json()["id"]
    return order_id


def propose(client: APIClient, order_id: str, **payload: Any) -> Any:
    if "lines" in payload:
        payload["lines"] = [{"sku": sku, "quantity": qty} for sku, qty in payload["lines"]]
    return client.post(f"/api/v1/orders/{order_id}/edits/", payload, format="json")


def commit(
    client: APIClient, order_id: str, edit_id: str, key: str | None = None, **body: Any
) -> Any:
    return client.post(
        f"/api/v1/orders/{order_id}/edits/{edit_id}/commit/",
        body,
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or new_idempotency_key(),
    )


def held(product: Product) -> int:
    """Units of the product held by reservations, checked against the stock counters."""
    reservations = Reservation.objects.filter(
        stock_item__product=product, status=Reservation.Status.HELD
    )
    total = sum(r.quantity for r in reservations)
    assert total == sum(s.reserved for s in StockItem.objects.filter(product=product))
    return total


def available(product: Product) -> int:
    return sum(s.on_hand - s.reserved for s in StockItem.objects.filter(product=product))
