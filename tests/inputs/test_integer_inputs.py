"""Integers in a JSON body must be JSON integers. DRF's own IntegerField also takes "500",
5.0 and "5.00" (as 5): a refund of "5.00" meant as euros would refund 5 cents. Every
amount, quantity and priority a client sends is refused unless it is an integer, with
problem+json naming the field, and nothing is stored."""

from typing import Any

import pytest

from tests.conftest import new_idempotency_key, order_payload
from tests.inputs.conftest import assert_problem, stored_state

NOT_INTEGERS = ["5", "5.00", 5.0, True, None, [5]]


def _field_error(response: Any, field: str) -> None:
    body = assert_problem(response, 400, "validation_error")
    assert [error["field"] for error in body["errors"]] == [field], body


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_product_price(staff_client, value):
    before = stored_state()
    response = staff_client.post(
        "/api/v1/products/",
        {"sku": "GEAR-1", "name": "Gear", "price": value, "currency": "EUR"},
        format="json",
    )
    _field_error(response, "price")
    assert stored_state() == before


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_warehouse_priority(staff_client, value):
    before = stored_state()
    response = staff_client.post(
        "/api/v1/warehouses/",
        {"code": "berlin", "name": "Berlin", "priority": value},
        format="json",
    )
    _field_error(response, "priority")
    assert stored_state() == before


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_stock_adjustment_quantity(staff_client, stocked_product, value):
    product = stocked_product(quantities={"main": 5})
    before = stored_state()
    response = staff_client.post(
        "/api/v1/stock/adjustments/",
        {"sku": product.sku, "warehouse": "main", "quantity": value, "reason": "count"},
        format="json",
    )
    _field_error(response, "quantity")
    assert stored_state() == before


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_refund_amount(staff_client, customer_client, stocked_product, value):
    product = stocked_product(quantities={"main": 5})
    order = customer_client.post(
        "/api/v1/orders/",
        order_payload([(product.sku, 1)]),
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    ).json()
    before = stored_state()
    response = staff_client.post(
        f"/api/v1/orders/{order['id']}/refund/",
        {"amount": value},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )
    _field_error(response, "amount")
    assert stored_state() == before


def test_integers_are_still_taken(staff_client):
    """The strict field refuses only what is not an integer."""
    response = staff_client.post(
        "/api/v1/products/",
        {"sku": "GEAR-2", "name": "Gear", "price": 1999, "currency": "EUR"},
        format="json",
    )
    assert response.status_code == 201, response.content[:300]
    assert response.json()["price"] == 1999
