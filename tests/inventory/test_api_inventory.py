"""Products, warehouses and stock administration through the HTTP API."""

import uuid

import pytest

from inventory.models import Product, StockItem, StockMovement, Warehouse
from tests.conftest import order_payload
from tests.factories import ProductFactory, WarehouseFactory

PRODUCTS_URL = "/api/v1/products/"
WAREHOUSES_URL = "/api/v1/warehouses/"
STOCK_URL = "/api/v1/stock/"
ADJUSTMENTS_URL = "/api/v1/stock/adjustments/"


def adjust(client, sku, warehouse, quantity, reason="cycle count"):
    return client.post(
        ADJUSTMENTS_URL,
        {"sku": sku, "warehouse": warehouse, "quantity": quantity, "reason": reason},
        format="json",
    )


def reserve(client, sku, quantity):
    response = client.post(
        "/api/v1/orders/",
        order_payload([(sku, quantity)]),
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"reserve-{uuid.uuid4().hex}",
    )
    assert response.status_code == 201, response.content
    return response.json()


def counters(product, warehouse_code):
    item = StockItem.objects.get(product=product, warehouse__code=warehouse_code)
    return item.on_hand, item.reserved


# Products -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_product_available_counts_only_active_warehouses_net_of_reservations(
    customer_client, stocked_product
):
    # given
    WarehouseFactory(code="closed", is_active=False)
    stocked_product(
        sku="MUG", name="Mug", price=899, quantities={"open-a": 5, "open-b": 3, "closed": 100}
    )
    reserve(customer_client, "MUG", 4)

    # when
    listed = customer_client.get(PRODUCTS_URL)
    detail = customer_client.get(f"{PRODUCTS_URL}MUG/")

    # then
    assert listed.status_code == detail.status_code == 200
    expected = {
        "sku": "MUG",
        "name": "Mug",
        "price": 899,
        "currency": "EUR",
        "available": 4,
        "allows_backorder": False,
        "backorder_available": 0,
    }
    assert listed.json() == [expected]
    assert detail.json() == expected


@pytest.mark.django_db
def test_product_without_stock_shows_zero_available(customer_client):
    # given
    product = ProductFactory()

    # when
    response = customer_client.get(f"{PRODUCTS_URL}{product.sku}/")

    # then
    assert response.status_code == 200
    assert response.json()["available"] == 0


@pytest.mark.django_db
def test_product_list_hides_inactive_products(customer_client):
    # given
    ProductFactory(sku="LIVE")
    ProductFactory(sku="GONE", is_active=False)

    # when
    listed = customer_client.get(PRODUCTS_URL)
    detail = customer_client.get(f"{PRODUCTS_URL}GONE/")

    # then
    assert [product["sku"] for product in listed.json()] == ["LIVE"]
    assert detail.status_code == 404
    assert detail.json()["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("sku", ["NOPE", "bad%00sku", "%00"])
def test_unknown_product_is_not_found(customer_client, sku):
    # when
    response = customer_client.get(f"{PRODUCTS_URL}{sku}/")

    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_staff_creates_a_product(staff_client):
    # when
    response = staff_client.post(
        PRODUCTS_URL,
        {"sku": "LAMP-1", "name": "Lamp", "price": 4500, "currency": "eur"},
        format="json",
    )

    # then
    assert response.status_code == 201, response.content
    assert response.json() == {
        "sku": "LAMP-1",
        "name": "Lamp",
        "price": 4500,
        "currency": "EUR",
        "available": 0,
        "allows_backorder": False,
        "backorder_available": 0,
    }
    assert Product.objects.get(sku="LAMP-1").currency == "EUR"


@pytest.mark.django_db
def test_duplicate_product_sku_is_a_conflict(staff_client):
    # given
    ProductFactory(sku="LAMP-1", name="Original")

    # when
    response = staff_client.post(
        PRODUCTS_URL,
        {"sku": "LAMP-1", "name": "Copy", "price": 1, "currency": "EUR"},
        format="json",
    )

    # then
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "sku_exists"
    assert Product.objects.get(sku="LAMP-1").name == "Original"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sku", "has space"),
        ("sku", ""),
        ("sku", "x" * 65),
        ("name", "nul\x00name"),
        ("price", -1),
        ("price", 10**13),
        ("price", 9.99),
        ("currency", "EURO"),
        ("currency", "E1R"),
    ],
)
def test_invalid_product_is_a_validation_error(staff_client, field, value):
    # given
    payload = {"sku": "OK-1", "name": "Thing", "price": 100, "currency": "EUR", field: value}

    # when
    response = staff_client.post(PRODUCTS_URL, payload, format="json")

    # then
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert [error["field"] for error in body["errors"]] == [field]
    assert not Product.objects.exists()


# Warehouses ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_creates_and_lists_warehouses(staff_client):
    # given
    WarehouseFactory(code="old", name="Old", region="eu", priority=1)

    # when
    created = staff_client.post(
        WAREHOUSES_URL,
        {"code": "berlin-1", "name": "Berlin", "region": "eu-central", "priority": 10},
        format="json",
    )
    listed = staff_client.get(WAREHOUSES_URL)

    # then
    assert created.status_code == 201, created.content
    assert created.json() == {
        "code": "berlin-1",
        "name": "Berlin",
        "region": "eu-central",
        "priority": 10,
        "active": True,
    }
    assert [warehouse["code"] for warehouse in listed.json()] == ["berlin-1", "old"]


@pytest.mark.django_db
def test_duplicate_warehouse_code_is_a_conflict(staff_client):
    # given
    WarehouseFactory(code="berlin-1", name="Original")

    # when
    response = staff_client.post(
        WAREHOUSES_URL, {"code": "berlin-1", "name": "Copy"}, format="json"
    )

    # then
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "warehouse_exists"
    assert Warehouse.objects.get(code="berlin-1").name == "Original"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("code", "not a slug"), ("code", "x" * 33), ("name", ""), ("priority", 10**7)],
)
def test_invalid_warehouse_is_a_validation_error(staff_client, field, value):
    # given
    payload = {"code": "ok", "name": "Fine", field: value}

    # when
    response = staff_client.post(WAREHOUSES_URL, payload, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert not Warehouse.objects.exists()


# Stock --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_lists_stock_per_warehouse(staff_client, stocked_product):
    # given
    WarehouseFactory(code="front", priority=10)
    stocked_product(sku="CUP", quantities={"front": 4, "back": 6})
    stocked_product(sku="OTHER")

    # when
    response = staff_client.get(STOCK_URL, {"sku": "CUP"})

    # then
    assert response.status_code == 200
    rows = [
        {key: row[key] for key in ("sku", "warehouse", "on_hand", "reserved", "available")}
        for row in response.json()
    ]
    assert rows == [
        {"sku": "CUP", "warehouse": "front", "on_hand": 4, "reserved": 0, "available": 4},
        {"sku": "CUP", "warehouse": "back", "on_hand": 6, "reserved": 0, "available": 6},
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("sku", ["NOPE", "bad\x00sku"])
def test_stock_filter_for_unknown_sku_lists_nothing(staff_client, stocked_product, sku):
    # given
    stocked_product()

    # when
    response = staff_client.get(STOCK_URL, {"sku": sku})

    # then
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.django_db
def test_receipt_adds_units_on_hand_and_records_a_movement(staff_client, staff, stocked_product):
    # given
    product = stocked_product(quantities={"main": 5})

    # when
    response = adjust(staff_client, product.sku, "main", 7, reason="delivery 42")

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["on_hand"], body["reserved"], body["available"]) == (12, 0, 12)
    assert counters(product, "main") == (12, 0)
    movement = StockMovement.objects.order_by("-id").first()
    assert (movement.kind, movement.on_hand_delta, movement.reason, movement.actor) == (
        StockMovement.Kind.RECEIPT,
        7,
        "delivery 42",
        staff,
    )


@pytest.mark.django_db
def test_receipt_into_a_new_warehouse_creates_the_stock_item(staff_client):
    # given
    product = ProductFactory()
    WarehouseFactory(code="empty")

    # when
    response = adjust(staff_client, product.sku, "empty", 3)

    # then
    assert response.status_code == 201
    assert counters(product, "empty") == (3, 0)


@pytest.mark.django_db
def test_removal_down_to_reserved_is_allowed(staff_client, customer_client, stocked_product):
    # given
    product = stocked_product(quantities={"main": 10})
    reserve(customer_client, product.sku, 4)

    # when
    response = adjust(staff_client, product.sku, "main", -6)

    # then
    assert response.status_code == 201, response.content
    assert counters(product, "main") == (4, 4)


@pytest.mark.django_db
def test_removal_below_reserved_is_a_conflict_and_changes_nothing(
    staff_client, customer_client, stocked_product
):
    # given
    product = stocked_product(quantities={"main": 10})
    reserve(customer_client, product.sku, 4)
    movements_before = StockMovement.objects.count()

    # when
    response = adjust(staff_client, product.sku, "main", -7)

    # then
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "stock_conflict"
    assert (body["on_hand"], body["reserved"]) == (10, 4)
    assert counters(product, "main") == (10, 4)
    assert StockMovement.objects.count() == movements_before


@pytest.mark.django_db
def test_removal_from_a_warehouse_without_stock_is_a_conflict_and_creates_nothing(staff_client):
    # given
    product = ProductFactory()
    WarehouseFactory(code="empty")

    # when
    response = adjust(staff_client, product.sku, "empty", -1)

    # then
    assert response.status_code == 409
    assert response.json()["code"] == "stock_conflict"
    assert not StockItem.objects.exists()
    assert not StockMovement.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("sku", "warehouse"), [("NOPE", "main"), ("KNOWN", "nowhere")])
def test_adjustment_for_unknown_sku_or_warehouse_is_not_found(
    staff_client, stocked_product, sku, warehouse
):
    # given
    stocked_product(sku="KNOWN", quantities={"main": 1})

    # when
    response = adjust(staff_client, sku, warehouse, 5)

    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    assert StockItem.objects.get().on_hand == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("quantity", 0, "zero_quantity"),
        ("quantity", 1_000_001, "max_value"),
        ("quantity", "many", "invalid"),
        ("reason", "", "blank"),
        ("sku", "bad\x00sku", "null_characters_not_allowed"),
    ],
)
def test_invalid_adjustment_is_a_validation_error(
    staff_client, stocked_product, field, value, code
):
    # given
    product = stocked_product(quantities={"main": 1})
    payload = {"sku": product.sku, "warehouse": "main", "quantity": 1, "reason": "count"}
    payload[field] = value

    # when
    response = staff_client.post(ADJUSTMENTS_URL, payload, format="json")

    # then
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert [(e["field"], e["code"]) for e in body["errors"]] == [(field, code)]
    assert counters(product, "main") == (1, 0)
