"""The checkout's validation errors, pinned: for each body below the answer is the
problem document that OrderCreateInputSerializer gave before the checkout body had a lean
validation path (checkout_error_bodies.json, recorded at commit 7915361 with the
serializer alone). Whatever path validates a body, a refused body answers the same, and
nothing is written."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.models import IdempotencyKey
from orders.models import Order
from tests.conftest import order_payload

ORDERS_URL = "/api/v1/orders/"
EXPECTED = json.loads((Path(__file__).parent / "checkout_error_bodies.json").read_text())


def _body(**overrides: Any) -> dict[str, Any]:
    return order_payload([("PEN", 2), ("INK", 1)]) | overrides


def _without(name: str) -> dict[str, Any]:
    body = _body()
    del body[name]
    return body


def _address(**overrides: Any) -> dict[str, Any]:
    body = _body()
    body["shipping_address"] = {**body["shipping_address"], **overrides}
    return body


def _lines(count: int) -> list[dict[str, Any]]:
    return [{"sku": f"S{index}", "quantity": 1} for index in range(count)]


def bad_bodies() -> Iterator[tuple[str, Any]]:
    yield "not_an_object", ["PEN"]
    yield "null", None
    yield "empty_object", {}
    yield "no_lines", _without("lines")
    yield "empty_lines", _body(lines=[])
    yield "lines_as_text", _body(lines="PEN")
    yield "too_many_lines", _body(lines=_lines(101))
    yield "bad_line_and_too_many", _body(lines=[*_lines(100), {"sku": "X", "quantity": 0}])
    yield "line_not_object", _body(lines=[5])
    yield "line_null", _body(lines=[None])
    yield "quantity_text", _body(lines=[{"sku": "PEN", "quantity": "2"}])
    yield "quantity_bool", _body(lines=[{"sku": "PEN", "quantity": True}])
    yield "quantity_float", _body(lines=[{"sku": "PEN", "quantity": 2.0}])
    yield "quantity_zero", _body(lines=[{"sku": "PEN", "quantity": 0}])
    yield "quantity_over", _body(lines=[{"sku": "PEN", "quantity": 1001}])
    yield "quantity_missing", _body(lines=[{"sku": "PEN"}])
    yield "sku_blank", _body(lines=[{"sku": "   ", "quantity": 1}])
    yield "sku_long", _body(lines=[{"sku": "S" * 65, "quantity": 1}])
    yield "sku_number", _body(lines=[{"sku": 5, "quantity": 1}])
    yield "sku_nul", _body(lines=[{"sku": "PE\u0000N", "quantity": 1}])
    yield (
        "duplicate_after_trim",
        _body(lines=[{"sku": "PEN", "quantity": 1}, {"sku": " PEN ", "quantity": 2}]),
    )
    yield (
        "duplicates_two",
        _body(lines=[{"sku": sku, "quantity": 1} for sku in ("B", "A", "B", "A")]),
    )
    yield "email_invalid", _body(email="not-an-email")
    yield "email_missing", _without("email")
    yield "email_long", _body(email="a" * 243 + "@example.com")
    yield "email_list", _body(email=["a@example.com"])
    yield "address_missing", _without("shipping_address")
    yield "address_text", _body(shipping_address="1 Analytical Way")
    yield "address_empty", _body(shipping_address={})
    yield "country_three", _address(country="DEU")
    yield "country_digit", _address(country="d3")
    yield "line2_null", _address(line2=None)
    yield "name_long", _address(name="N" * 201)
    yield "postal_blank", _address(postal_code=" ")
    yield "shipping_method_blank", _body(shipping_method="")
    yield "shipping_method_upper", _body(shipping_method="Express")
    yield "shipping_method_number", _body(shipping_method=5)
    yield "payment_method_space", _body(payment_method="pm card")
    yield "payment_method_null", _body(payment_method=None)
    yield "payment_method_blank", _body(payment_method="")
    yield (
        "several",
        {
            "lines": [{"sku": "PEN", "quantity": 1}, {"sku": "", "quantity": -1}],
            "email": "x",
            "shipping_address": {"country": "ZZZ"},
            "shipping_method": "A",
        },
    )


BAD_BODIES = dict(bad_bodies())


def test_every_bad_body_has_its_recorded_answer():
    assert set(BAD_BODIES) == set(EXPECTED)


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_refused_checkout_answers_as_the_serializer_did(customer_client, name):
    # given
    body = BAD_BODIES[name]

    # when
    response = customer_client.post(
        ORDERS_URL,
        json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=f"bad-{name}",
    )

    # then
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json() == EXPECTED[name]
    assert not Order.objects.exists()
    assert not IdempotencyKey.objects.exists()
