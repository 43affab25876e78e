"""Checkout and order-list contracts through the HTTP API."""

import base64
from datetime import timedelta
from io import StringIO
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.models import IdempotencyKey
from inventory.models import Reservation, StockItem, StockMovement
from orders.models import Order
from orders.states import OrderStatus
from tests.conftest import order_payload
from tests.factories import WarehouseFactory

ORDERS_URL = "/api/v1/orders/"


def checkout(client, payload, key="checkout-key", **extra):
    return client.post(ORDERS_URL, payload, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


def reserved_by_warehouse(order_id) -> dict[str, int]:
    reservations = Reservation.objects.filter(order_line__order_id=order_id).select_related(
        "stock_item__warehouse"
    )
    totals: dict[str, int] = {}
    for reservation in reservations:
        code = reservation.stock_item.warehouse.code
        totals[code] = totals.get(code, 0) + reservation.quantity
    return totals


# Checkout body -----------------------------------------------------------------------


@pytest.mark.django_db
def test_checkout_returns_the_order_with_integer_amounts(customer_client, stocked_product):
    # given
    pen = stocked_product(sku="PEN", name="Pen", price=250, currency="EUR")
    ink = stocked_product(sku="INK", name="Ink", price=1199, currency="EUR")

    # when
    response = checkout(customer_client, order_payload([("PEN", 2), ("INK", 1)]))

    # then
    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/json"
    assert "Idempotent-Replayed" not in response
    body = response.json()
    assert {
        "id",
        "number",
        "status",
        "lines",
        "subtotal",
        "total",
        "currency",
        "email",
        "shipping_address",
        "created_at",
    } <= set(body)
    assert body["status"] == OrderStatus.PENDING_PAYMENT
    assert body["number"].startswith("OMS-")
    assert body["currency"] == "EUR"
    assert body["email"] == "buyer@example.com"
    assert body["shipping_address"]["country"] == "GB"
    assert body["lines"] == [
        {
            "sku": "PEN",
            "name": "Pen",
            "quantity": 2,
            "unit_price": 250,
            "line_total": 500,
            "tax_amount": 0,  # no tax rate for GB is configured
        },
        {
            "sku": "INK",
            "name": "Ink",
            "quantity": 1,
            "unit_price": 1199,
            "line_total": 1199,
            "tax_amount": 0,
        },
    ]
    assert body["subtotal"] == 1699
    assert body["total"] == 1699
    for amount in (body["subtotal"], body["total"]):
        assert isinstance(amount, int)
    for line in body["lines"]:
        assert all(isinstance(line[name], int) for name in ("quantity", "unit_price", "line_total"))
    assert StockItem.objects.get(product=pen).reserved == 2
    assert StockItem.objects.get(product=ink).reserved == 1


@pytest.mark.django_db
def test_checkout_response_is_the_order_as_read_back(customer_client, stocked_product):
    # given
    stocked_product(sku="PEN", price=250)
    stocked_product(sku="INK", price=1199)

    # when
    created = checkout(customer_client, order_payload([("PEN", 2), ("INK", 1)]))
    read_back = customer_client.get(f"{ORDERS_URL}{created.json()['id']}/")

    # then
    assert created.status_code == 201, created.content
    assert created.json() == read_back.json()


@pytest.mark.django_db
def test_checkout_accepts_a_hundred_lines(customer_client, stocked_product):
    # given
    products = [stocked_product(quantities={"main": 1}) for _ in range(100)]

    # when
    response = checkout(customer_client, order_payload([(p.sku, 1) for p in products]))

    # then
    assert response.status_code == 201, response.content
    assert len(response.json()["lines"]) == 100


@pytest.mark.django_db
def test_checkout_normalizes_country_to_upper_case(customer_client, stocked_product):
    # given
    product = stocked_product()
    payload = order_payload([(product.sku, 1)])
    payload["shipping_address"]["country"] = "de"

    # when
    response = checkout(customer_client, payload)

    # then
    assert response.status_code == 201
    assert response.json()["shipping_address"]["country"] == "DE"


# Idempotency --------------------------------------------------------------------------


@pytest.mark.django_db
def test_same_key_and_body_replays_the_first_response(customer_client, stocked_product):
    # given
    product = stocked_product(quantities={"main": 5})
    payload = order_payload([(product.sku, 2)])
    first = checkout(customer_client, payload, key="same")

    # when
    second = checkout(customer_client, payload, key="same")

    # then
    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Order.objects.count() == 1
    assert StockItem.objects.get(product=product).reserved == 2


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_rejected(customer_client, stocked_product):
    # given
    product = stocked_product(quantities={"main": 5})
    checkout(customer_client, order_payload([(product.sku, 2)]), key="same")

    # when
    response = checkout(customer_client, order_payload([(product.sku, 3)]), key="same")

    # then
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1
    assert StockItem.objects.get(product=product).reserved == 2


@pytest.mark.django_db
def test_idempotency_keys_are_scoped_per_user(
    customer_client, other_customer_client, stocked_product
):
    # given
    product = stocked_product(quantities={"main": 5})
    payload = order_payload([(product.sku, 1)])
    mine = checkout(customer_client, payload, key="shared-key")

    # when
    theirs = checkout(other_customer_client, payload, key="shared-key")

    # then
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert theirs.json()["id"] != mine.json()["id"]
    assert Order.objects.count() == 2
    assert StockItem.objects.get(product=product).reserved == 2


@pytest.mark.django_db
def test_checkout_without_idempotency_key_is_rejected(customer_client, stocked_product):
    # given
    product = stocked_product()

    # when
    response = customer_client.post(ORDERS_URL, order_payload([(product.sku, 1)]), format="json")

    # then
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_key_missing"
    assert not Order.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key",
    ["k" * 256, "tab\tkey", "new\nline", "caf\u00e9", "bell\x07", "del\x7f"],
    ids=["too-long", "tab", "newline", "non-ascii", "control", "delete"],
)
def test_invalid_idempotency_key_is_rejected(customer_client, stocked_product, key):
    # given
    product = stocked_product()

    # when
    response = checkout(customer_client, order_payload([(product.sku, 1)]), key=key)

    # then
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_invalid"
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_idempotency_key_of_255_printable_characters_is_accepted(customer_client, stocked_product):
    # given
    product = stocked_product()

    # when
    response = checkout(customer_client, order_payload([(product.sku, 1)]), key="k" * 255)

    # then
    assert response.status_code == 201


@pytest.mark.django_db
def test_stored_error_is_replayed_for_the_same_key(customer_client, stocked_product, staff_client):
    # given
    product = stocked_product(quantities={"main": 1})
    payload = order_payload([(product.sku, 2)])
    first = checkout(customer_client, payload, key="short")
    staff_client.post(
        "/api/v1/stock/adjustments/",
        {"sku": product.sku, "warehouse": "main", "quantity": 10, "reason": "restock"},
        format="json",
    )

    # when
    second = checkout(customer_client, payload, key="short")

    # then
    assert first.status_code == 409
    assert first.json()["code"] == "insufficient_stock"
    assert second.status_code == 409
    assert second["Content-Type"] == "application/problem+json"
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert not Order.objects.exists()
    assert StockItem.objects.get(product=product).reserved == 0


@pytest.mark.django_db
def test_validation_errors_are_not_stored_against_the_key(customer_client, stocked_product):
    # given
    product = stocked_product()
    rejected = checkout(customer_client, order_payload([(product.sku, 0)]), key="fix-and-retry")

    # when
    accepted = checkout(customer_client, order_payload([(product.sku, 1)]), key="fix-and-retry")

    # then
    assert rejected.status_code == 400
    assert accepted.status_code == 201


@pytest.mark.django_db
def test_purge_command_deletes_keys_older_than_a_day_and_keeps_newer(
    customer_client, stocked_product
):
    # given
    product = stocked_product()
    for key in ("old", "recent"):
        checkout(customer_client, order_payload([(product.sku, 1)]), key=key)
    now = timezone.now()
    IdempotencyKey.objects.filter(key="old").update(created_at=now - timedelta(hours=25))
    IdempotencyKey.objects.filter(key="recent").update(created_at=now - timedelta(hours=23))
    out = StringIO()

    # when
    call_command("purge_idempotency_keys", stdout=out)

    # then
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["recent"]
    assert "Purged 1" in out.getvalue()


# Allocation ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_order_comes_from_the_highest_priority_warehouse_that_can_serve_it_whole(
    customer_client, stocked_product
):
    # given
    WarehouseFactory(code="first", priority=30)
    WarehouseFactory(code="second", priority=20)
    WarehouseFactory(code="third", priority=10)
    product = stocked_product(quantities={"first": 2, "second": 5, "third": 9})

    # when
    response = checkout(customer_client, order_payload([(product.sku, 4)]))

    # then
    assert response.status_code == 201
    assert reserved_by_warehouse(response.json()["id"]) == {"second": 4}


@pytest.mark.django_db
def test_order_that_no_warehouse_can_serve_whole_is_split_over_the_fewest(
    customer_client, stocked_product
):
    # given
    WarehouseFactory(code="high", priority=30)
    WarehouseFactory(code="middle", priority=20)
    WarehouseFactory(code="low", priority=10)
    product = stocked_product(quantities={"high": 3, "middle": 2, "low": 4})

    # when
    response = checkout(customer_client, order_payload([(product.sku, 7)]))

    # then
    assert response.status_code == 201
    assert reserved_by_warehouse(response.json()["id"]) == {"high": 3, "low": 4}


@pytest.mark.django_db
def test_multi_line_order_prefers_one_warehouse_holding_every_line(
    customer_client, stocked_product
):
    # given
    WarehouseFactory(code="big", priority=50)
    WarehouseFactory(code="full", priority=10)
    pen = stocked_product(quantities={"big": 10, "full": 1})
    ink = stocked_product(quantities={"full": 1})

    # when
    response = checkout(customer_client, order_payload([(pen.sku, 1), (ink.sku, 1)]))

    # then
    assert response.status_code == 201
    assert reserved_by_warehouse(response.json()["id"]) == {"full": 2}


@pytest.mark.django_db
def test_inactive_warehouse_stock_is_not_allocated(customer_client, stocked_product):
    # given
    WarehouseFactory(code="closed", priority=50, is_active=False)
    product = stocked_product(quantities={"closed": 10, "open": 1})

    # when
    response = checkout(customer_client, order_payload([(product.sku, 2)]))

    # then
    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_stock"
    assert not Reservation.objects.exists()


# Listing ------------------------------------------------------------------------------


@pytest.fixture
def orders_of(stocked_product, place_order):
    """orders_of(client, count): place `count` one-line orders and return their ids."""
    product = stocked_product(quantities={"main": 1000})

    def make(client, count):
        ids = []
        for _ in range(count):
            response = place_order(client, [(product.sku, 1)])
            assert response.status_code == 201, response.content
            ids.append(response.json()["id"])
        return ids

    return make


def all_pages(client, url):
    ids, pages = [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        ids.extend(order["id"] for order in body["results"])
        url = body["next"]
        pages += 1
    return ids, pages


@pytest.mark.django_db
def test_order_list_is_cursor_paginated_newest_first(customer_client, orders_of):
    # given
    ids = orders_of(customer_client, 5)
    base = timezone.now()
    for age, order_id in enumerate(reversed(ids)):
        Order.objects.filter(pk=order_id).update(created_at=base - timedelta(minutes=age))

    # when
    listed, pages = all_pages(customer_client, f"{ORDERS_URL}?page_size=2")

    # then
    assert listed == list(reversed(ids))
    assert pages == 3


@pytest.mark.django_db
def test_order_list_pages_do_not_skip_orders_created_at_the_same_instant(
    customer_client, orders_of
):
    # given
    ids = orders_of(customer_client, 5)
    Order.objects.filter(pk__in=ids).update(created_at=timezone.now())

    # when
    listed, _ = all_pages(customer_client, f"{ORDERS_URL}?page_size=2")

    # then
    assert sorted(listed) == sorted(ids)
    assert len(listed) == 5


@pytest.mark.django_db
def test_order_list_filters_by_status(customer_client, orders_of):
    # given
    kept, cancelled = orders_of(customer_client, 2)
    customer_client.post(
        f"{ORDERS_URL}{cancelled}/cancel/", {}, format="json", HTTP_IDEMPOTENCY_KEY="c1"
    )

    # when
    response = customer_client.get(ORDERS_URL, {"status": "cancelled"})

    # then
    assert response.status_code == 200
    assert [order["id"] for order in response.json()["results"]] == [cancelled]
    pending = customer_client.get(ORDERS_URL, {"status": "pending_payment"}).json()
    assert [order["id"] for order in pending["results"]] == [kept]


@pytest.mark.django_db
def test_order_list_filters_by_creation_window(customer_client, orders_of):
    # given
    old, middle, new = orders_of(customer_client, 3)
    now = timezone.now()
    Order.objects.filter(pk=old).update(created_at=now - timedelta(days=3))
    Order.objects.filter(pk=middle).update(created_at=now - timedelta(days=2))
    Order.objects.filter(pk=new).update(created_at=now - timedelta(days=1))

    # when
    response = customer_client.get(
        ORDERS_URL,
        {
            "created_after": (now - timedelta(days=2, hours=1)).isoformat(),
            "created_before": (now - timedelta(days=1, hours=1)).isoformat(),
        },
    )

    # then
    assert response.status_code == 200
    assert [order["id"] for order in response.json()["results"]] == [middle]
    after = customer_client.get(
        ORDERS_URL, {"created_after": (now - timedelta(days=2, hours=1)).isoformat()}
    )
    assert [order["id"] for order in after.json()["results"]] == [new, middle]


@pytest.mark.django_db
def test_filtered_order_list_keeps_its_filter_across_pages(customer_client, orders_of):
    # given
    ids = orders_of(customer_client, 5)
    cancelled = ids[:3]
    for order_id in cancelled:
        response = customer_client.post(
            f"{ORDERS_URL}{order_id}/cancel/", {}, format="json", HTTP_IDEMPOTENCY_KEY=order_id
        )
        assert response.status_code == 200

    # when
    listed, pages = all_pages(customer_client, f"{ORDERS_URL}?status=cancelled&page_size=2")

    # then
    assert sorted(listed) == sorted(cancelled)
    assert pages == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        {"status": "teleported"},
        {"created_after": "yesterday"},
        {"created_before": "2024-13-45T00:00:00Z"},
        {"status": "pending\x00payment"},
    ],
    ids=["status", "created_after", "created_before", "nul"],
)
def test_invalid_list_filter_is_a_validation_error(customer_client, query):
    # when
    response = customer_client.get(ORDERS_URL, query)

    # then
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_error"
    assert [error["field"] for error in body["errors"]] == list(query)


@pytest.mark.django_db
def test_garbage_cursor_is_an_invalid_cursor_not_a_server_error(customer_client):
    # when
    response = customer_client.get(ORDERS_URL, {"cursor": "not-a-cursor"})

    # then
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "position", ["garbage", "2024-01-01\x00", "9999-99-99 99:99:99", "2024-01-01 00:00:00"]
)
def test_forged_cursor_position_is_an_invalid_cursor_not_a_server_error(
    customer_client, orders_of, position
):
    # given
    orders_of(customer_client, 1)
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()

    # when
    response = customer_client.get(ORDERS_URL, {"cursor": cursor})

    # then
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_cursor"


@pytest.mark.django_db
def test_checkout_writes_one_reserve_movement_per_reservation(customer_client, stocked_product):
    # given
    product = stocked_product(quantities={"main": 4})

    # when
    response = checkout(customer_client, order_payload([(product.sku, 3)]))

    # then
    assert response.status_code == 201
    reserve = StockMovement.objects.filter(kind=StockMovement.Kind.RESERVE)
    assert list(reserve.values_list("on_hand_delta", "reserved_delta")) == [(0, 3)]
