"""Datetimes that reach PostgreSQL (the order list's created_after / created_before,
the position inside a cursor) are converted to UTC first; offsets beyond +-15:59 and
dates that overflow once in UTC are a 400, never a database error."""

import base64
from urllib.parse import urlencode

import pytest

from tests.inputs.conftest import assert_problem, stored_state

ORDERS_URL = "/api/v1/orders/"
OUT_OF_RANGE = [
    "2024-01-01T00:00:00+16:00",
    "2024-01-01T00:00:00-16:00",
    "2024-01-01T00:00:00+23:59",
    "2024-01-01T00:00:00-20:30",
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC
    "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
]


def cursor_at(position: str) -> str:
    return base64.b64encode(urlencode({"p": position}).encode()).decode()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["created_after", "created_before"])
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_a_filter_datetime_postgresql_cannot_take_is_a_field_error(customer_client, name, value):
    before = stored_state()

    response = customer_client.get(ORDERS_URL, {name: value})

    problem = assert_problem(response, 400, "validation_error")
    assert [error["field"] for error in problem["errors"]] == [name]
    assert stored_state() == before


@pytest.mark.django_db
def test_an_empty_filter_is_a_field_error_not_a_filter_left_out(customer_client):
    response = customer_client.get(ORDERS_URL, {"created_after": ""})

    problem = assert_problem(response, 400, "validation_error")
    assert [error["field"] for error in problem["errors"]] == ["created_after"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value", ["2000-01-01T00:00:00+15:59", "2000-01-01T00:00:00-15:59", "2000-01-01T00:00:00Z"]
)
def test_offsets_up_to_15_59_filter_as_their_utc_instant(
    customer_client, place_order, stocked_product, value
):
    product = stocked_product(quantities={"main": 5})
    place_order(customer_client, [(product.sku, 1)])

    after = customer_client.get(ORDERS_URL, {"created_after": value})
    before = customer_client.get(ORDERS_URL, {"created_before": value})

    assert len(after.json()["results"]) == 1
    assert before.json()["results"] == []


@pytest.mark.django_db
@pytest.mark.parametrize("position", OUT_OF_RANGE)
def test_a_cursor_position_postgresql_cannot_take_is_an_invalid_cursor(
    customer_client, place_order, stocked_product, position
):
    product = stocked_product(quantities={"main": 5})
    place_order(customer_client, [(product.sku, 1)])
    before = stored_state()

    response = customer_client.get(ORDERS_URL, {"cursor": cursor_at(position)})

    assert_problem(response, 400, "invalid_cursor")
    assert stored_state() == before


@pytest.mark.django_db
def test_a_cursor_with_an_ordinary_offset_pages_from_its_utc_instant(
    customer_client, place_order, stocked_product
):
    product = stocked_product(quantities={"main": 5})
    place_order(customer_client, [(product.sku, 1)])

    response = customer_client.get(ORDERS_URL, {"cursor": cursor_at("2999-01-01T02:00:00+02:00")})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
