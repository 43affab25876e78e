"""Every API error is application/problem+json with a stable code, never a 500."""

import json
import uuid

import pytest

from inventory.models import Reservation, StockItem, StockMovement
from orders.models import Order
from tests.conftest import order_payload
from tests.factories import ProductFactory

ORDERS_URL = "/api/v1/orders/"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def checkout(client, payload, **extra):
    return client.post(
        ORDERS_URL,
        payload,
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"errors-{uuid.uuid4().hex}",
        **extra,
    )


def checkout_raw(client, body, content_type="application/json"):
    return client.post(
        ORDERS_URL,
        data=body,
        content_type=content_type,
        HTTP_IDEMPOTENCY_KEY=f"errors-{uuid.uuid4().hex}",
    )


def assert_problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].startswith("https://")
    assert body["title"]
    assert body["detail"]
    return body


def assert_nothing_placed():
    assert not Order.objects.exists()
    assert not Reservation.objects.exists()
    assert not StockMovement.objects.filter(kind=StockMovement.Kind.RESERVE).exists()
    assert all(item.reserved == 0 for item in StockItem.objects.all())


def error_fields(body):
    return [error["field"] for error in body["errors"]]


# Domain errors ------------------------------------------------------------------------


@pytest.mark.django_db
def test_unknown_sku_is_rejected_listing_the_skus(customer_client, stocked_product):
    # given
    known = stocked_product()

    # when
    response = checkout(
        customer_client, order_payload([(known.sku, 1), ("NOPE-2", 1), ("NOPE-1", 1)])
    )

    # then
    body = assert_problem(response, 422, "unknown_sku")
    assert body["skus"] == ["NOPE-1", "NOPE-2"]
    assert "NOPE-1" in body["detail"]
    assert_nothing_placed()


@pytest.mark.django_db
def test_inactive_product_counts_as_unknown_sku(customer_client, stocked_product):
    # given
    product = stocked_product(is_active=False)

    # when
    response = checkout(customer_client, order_payload([(product.sku, 1)]))

    # then
    body = assert_problem(response, 422, "unknown_sku")
    assert body["skus"] == [product.sku]


@pytest.mark.django_db
def test_insufficient_stock_names_the_sku_and_reserves_nothing(customer_client, stocked_product):
    # given
    product = stocked_product(quantities={"main": 2})

    # when
    response = checkout(customer_client, order_payload([(product.sku, 3)]))

    # then
    body = assert_problem(response, 409, "insufficient_stock")
    assert body["skus"] == [product.sku]
    assert product.sku in body["detail"]
    assert_nothing_placed()


@pytest.mark.django_db
def test_one_short_line_of_several_fails_the_whole_order(customer_client, stocked_product):
    # given
    plenty = stocked_product(quantities={"main": 50})
    also_plenty = stocked_product(quantities={"main": 50})
    short = stocked_product(quantities={"main": 1})

    # when
    response = checkout(
        customer_client,
        order_payload([(plenty.sku, 5), (short.sku, 2), (also_plenty.sku, 5)]),
    )

    # then
    body = assert_problem(response, 409, "insufficient_stock")
    assert body["skus"] == [short.sku]
    assert_nothing_placed()


@pytest.mark.django_db
def test_product_without_any_stock_is_insufficient_stock(customer_client):
    # given
    product = ProductFactory()

    # when
    response = checkout(customer_client, order_payload([(product.sku, 1)]))

    # then
    body = assert_problem(response, 409, "insufficient_stock")
    assert body["skus"] == [product.sku]


@pytest.mark.django_db
def test_products_in_different_currencies_cannot_share_an_order(customer_client, stocked_product):
    # given
    euro = stocked_product(currency="EUR")
    dollar = stocked_product(currency="USD")

    # when
    response = checkout(customer_client, order_payload([(euro.sku, 1), (dollar.sku, 1)]))

    # then
    assert_problem(response, 422, "currency_mismatch")
    assert_nothing_placed()


# Line validation ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "quantity",
    [0, -1, 1001, 10**20, 1.5, 2.0, "two", "2", None, [], {}, True],
    ids=[
        "zero",
        "negative",
        "over-max",
        "huge",
        "fraction",
        "float",
        "string",
        "numeric-string",
        "null",
        "list",
        "object",
        "boolean",
    ],
)
def test_bad_quantity_is_a_validation_error_on_the_line(customer_client, stocked_product, quantity):
    # given
    product = stocked_product()
    payload = order_payload([(product.sku, 1)])
    payload["lines"][0]["quantity"] = quantity

    # when
    response = checkout(customer_client, payload)

    # then
    body = assert_problem(response, 400, "validation_error")
    assert error_fields(body) == ["lines[0].quantity"]
    assert_nothing_placed()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("literal", "code"),
    [
        ("1e400", "validation_error"),
        ("1" * 5000, "malformed_json"),
        ("NaN", "malformed_json"),
        ("-Infinity", "malformed_json"),
    ],
    ids=["overflowing-float", "5000-digits", "nan", "infinity"],
)
def test_out_of_range_json_numbers_are_client_errors(
    customer_client, stocked_product, literal, code
):
    # given
    product = stocked_product()
    body = json.dumps(order_payload([(product.sku, 1)])).replace(
        '"quantity": 1', f'"quantity": {literal}'
    )

    # when
    response = checkout_raw(customer_client, body)

    # then
    assert_problem(response, 400, code)
    assert_nothing_placed()


@pytest.mark.django_db
def test_error_on_a_later_line_names_its_index(customer_client, stocked_product):
    # given
    first, second = stocked_product(), stocked_product()
    payload = order_payload([(first.sku, 1), (second.sku, -3)])

    # when
    response = checkout(customer_client, payload)

    # then
    body = assert_problem(response, 400, "validation_error")
    assert error_fields(body) == ["lines[1].quantity"]


@pytest.mark.django_db
def test_duplicate_sku_lines_are_rejected(customer_client, stocked_product):
    # given
    product = stocked_product()

    # when
    response = checkout(customer_client, order_payload([(product.sku, 1), (product.sku, 2)]))

    # then
    body = assert_problem(response, 400, "validation_error")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("lines", "duplicate_sku")]
    assert product.sku in body["errors"][0]["detail"]
    assert_nothing_placed()


@pytest.mark.django_db
def test_more_than_a_hundred_lines_are_rejected(customer_client):
    # given
    payload = order_payload([(f"SKU-{n}", 1) for n in range(101)])

    # when
    response = checkout(customer_client, payload)

    # then
    body = assert_problem(response, 400, "validation_error")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("lines", "max_length")]


@pytest.mark.django_db
@pytest.mark.parametrize("lines", [[], None, "SKU-1", {"sku": "SKU-1", "quantity": 1}, [1]])
def test_missing_empty_or_malformed_lines_are_rejected(customer_client, lines):
    # given
    payload = order_payload([])
    payload["lines"] = lines

    # when
    response = checkout(customer_client, payload)

    # then
    body = assert_problem(response, 400, "validation_error")
    assert all(field.startswith("lines") for field in error_fields(body))


@pytest.mark.django_db
def test_body_without_lines_is_rejected(customer_client):
    # given
    payload = order_payload([])
    del payload["lines"]

    # when
    response = checkout(customer_client, payload)

    # then
    body = assert_problem(response, 400, "validation_error")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("lines", "required")]


# Body shape ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body", ["[]", '[{"sku": "A", "quantity": 1}]', '"order please"', "42", "null"]
)
def test_body_that_is_not_an_object_is_rejected(customer_client, body):
    # when
    response = checkout_raw(customer_client, body)

    # then
    assert_problem(response, 400, "validation_error")
    assert_nothing_placed()


@pytest.mark.django_db
@pytest.mark.parametrize("body", ['{"lines": [', "{'lines': []}", "\x00", '{"a": 1} trailing'])
def test_malformed_json_is_rejected(customer_client, body):
    # when
    response = checkout_raw(customer_client, body)

    # then
    assert_problem(response, 400, "malformed_json")
    assert_nothing_placed()


@pytest.mark.django_db
def test_empty_body_names_every_missing_field(customer_client):
    # when
    response = checkout_raw(customer_client, "")

    # then
    body = assert_problem(response, 400, "validation_error")
    assert sorted(error_fields(body)) == ["email", "lines", "shipping_address"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml"],
)
def test_wrong_content_type_is_unsupported(customer_client, stocked_product, content_type):
    # given
    product = stocked_product()
    body = json.dumps(order_payload([(product.sku, 1)]))

    # when
    response = checkout_raw(customer_client, body, content_type=content_type)

    # then
    assert_problem(response, 415, "unsupported_media_type")
    assert_nothing_placed()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("lines", 0, "sku"), "lines[0].sku"),
        (("email",), "email"),
        (("shipping_address", "name"), "shipping_address.name"),
        (("shipping_address", "city"), "shipping_address.city"),
    ],
)
def test_nul_characters_in_strings_are_rejected(customer_client, stocked_product, path, field):
    # given
    product = stocked_product()
    payload = order_payload([(product.sku, 1)])
    target = payload
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "bad\x00value"

    # when
    response = checkout(customer_client, payload)

    # then
    body = assert_problem(response, 400, "validation_error")
    assert field in error_fields(body)
    assert_nothing_placed()


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["not-an-email", "", "a@", "@b.example", None])
def test_invalid_email_is_rejected(customer_client, stocked_product, email):
    # given
    product = stocked_product()

    # when
    response = checkout(customer_client, order_payload([(product.sku, 1)], email=email))

    # then
    body = assert_problem(response, 400, "validation_error")
    assert error_fields(body) == ["email"]


@pytest.mark.django_db
@pytest.mark.parametrize("country", ["GBR", "G", "12", "", "G\u00df", None])
def test_bad_country_is_rejected(customer_client, stocked_product, country):
    # given
    product = stocked_product()
    payload = order_payload([(product.sku, 1)])
    payload["shipping_address"]["country"] = country

    # when
    response = checkout(customer_client, payload)

    # then
    body = assert_problem(response, 400, "validation_error")
    assert error_fields(body) == ["shipping_address.country"]


@pytest.mark.django_db
def test_missing_shipping_address_fields_are_each_named(customer_client, stocked_product):
    # given
    product = stocked_product()

    # when
    response = checkout(
        customer_client, order_payload([(product.sku, 1)], shipping_address={"name": "Ada"})
    )

    # then
    body = assert_problem(response, 400, "validation_error")
    assert sorted(error_fields(body)) == [
        "shipping_address.city",
        "shipping_address.country",
        "shipping_address.line1",
        "shipping_address.postal_code",
    ]


# Not found ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["", "history/"])
def test_unknown_order_id_is_not_found(customer_client, suffix):
    # when
    response = customer_client.get(f"{ORDERS_URL}{uuid.uuid4()}/{suffix}")

    # then
    assert_problem(response, 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/orders/not-a-uuid/",
        "/api/v1/orders/12345/history/",
        "/api/v1/orders/xyz/cancel/",
        "/api/v1/nowhere/",
    ],
)
def test_malformed_order_id_or_unknown_path_is_not_found(customer_client, path):
    # when
    response = customer_client.get(path)

    # then
    assert_problem(response, 404, "not_found")


@pytest.mark.django_db
def test_unsupported_method_is_a_problem(customer_client):
    # when
    response = customer_client.delete(ORDERS_URL)

    # then
    assert_problem(response, 405, "method_not_allowed")
