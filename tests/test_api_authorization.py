"""Who may call which endpoint: anonymous, customer, another customer, staff."""

import uuid

import pytest

from inventory.models import Product, StockItem, Warehouse
from orders.models import Order
from orders.states import OrderStatus
from tests.conftest import order_payload

AN_ORDER_ID = "00000000-0000-4000-8000-000000000000"

# (method, path, body) for every endpoint of the API.
EVERY_ENDPOINT = [
    ("get", "/api/v1/products/", None),
    ("post", "/api/v1/products/", {"sku": "X-1", "name": "X", "price": 1, "currency": "EUR"}),
    ("get", "/api/v1/products/X-1/", None),
    ("get", "/api/v1/warehouses/", None),
    ("post", "/api/v1/warehouses/", {"code": "wh", "name": "Warehouse"}),
    ("get", "/api/v1/stock/", None),
    (
        "post",
        "/api/v1/stock/adjustments/",
        {"sku": "X-1", "warehouse": "wh", "quantity": 1, "reason": "count"},
    ),
    ("get", "/api/v1/orders/", None),
    ("post", "/api/v1/orders/", order_payload([("X-1", 1)])),
    ("get", f"/api/v1/orders/{AN_ORDER_ID}/", None),
    ("get", f"/api/v1/orders/{AN_ORDER_ID}/history/", None),
    ("post", f"/api/v1/orders/{AN_ORDER_ID}/cancel/", {}),
    ("post", f"/api/v1/orders/{AN_ORDER_ID}/transitions/", {"transition": "confirm"}),
]

# Endpoints only staff may call, with a body that would otherwise succeed.
STAFF_ONLY = [
    ("post", "/api/v1/products/", {"sku": "NEW-1", "name": "New", "price": 1, "currency": "EUR"}),
    ("get", "/api/v1/warehouses/", None),
    ("post", "/api/v1/warehouses/", {"code": "new-wh", "name": "New"}),
    ("get", "/api/v1/stock/", None),
    (
        "post",
        "/api/v1/stock/adjustments/",
        {"sku": "{sku}", "warehouse": "main", "quantity": 5, "reason": "count"},
    ),
    ("post", "/api/v1/orders/{order_id}/transitions/", {"transition": "confirm"}),
]


def call(client, method, path, body):
    if method == "get":
        return client.get(path)
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"auth-{uuid.uuid4().hex}")


def endpoint_id(endpoint):
    method, path, _ = endpoint
    return f"{method.upper()} {path.replace(AN_ORDER_ID, '{id}')}"


@pytest.fixture
def customer_order(customer_client, stocked_product, place_order):
    """A pending order of `customer`, and its product."""
    product = stocked_product(quantities={"main": 10})
    response = place_order(customer_client, [(product.sku, 2)])
    assert response.status_code == 201, response.content
    return response.json()["id"], product


# Anonymous ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", EVERY_ENDPOINT, ids=endpoint_id)
def test_anonymous_caller_must_authenticate(anonymous_client, endpoint):
    # when
    response = call(anonymous_client, *endpoint)

    # then
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
def test_anonymous_caller_cannot_cancel_or_read_a_real_order(anonymous_client, customer_order):
    # given
    order_id, product = customer_order

    # when
    detail = anonymous_client.get(f"/api/v1/orders/{order_id}/")
    cancel = call(anonymous_client, "post", f"/api/v1/orders/{order_id}/cancel/", {})

    # then
    assert detail.status_code == cancel.status_code == 401
    assert Order.objects.get(pk=order_id).status == OrderStatus.PENDING_PAYMENT
    assert StockItem.objects.get(product=product).reserved == 2


@pytest.mark.django_db
def test_invalid_token_is_rejected(anonymous_client):
    # given
    anonymous_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    # when
    response = anonymous_client.get("/api/v1/orders/")

    # then
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "authentication_failed"


# Customer on staff endpoints ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", STAFF_ONLY, ids=endpoint_id)
def test_customer_cannot_use_staff_endpoints(customer_client, customer_order, endpoint):
    # given
    order_id, product = customer_order
    method, path, body = endpoint
    path = path.format(order_id=order_id)
    if body is not None:
        body = {k: v.format(sku=product.sku) if isinstance(v, str) else v for k, v in body.items()}
    products, warehouses = Product.objects.count(), Warehouse.objects.count()

    # when
    response = call(customer_client, method, path, body)

    # then
    assert response.status_code == 403, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "permission_denied"
    assert (Product.objects.count(), Warehouse.objects.count()) == (products, warehouses)
    assert StockItem.objects.get(product=product).on_hand == 10
    assert Order.objects.get(pk=order_id).status == OrderStatus.PENDING_PAYMENT


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", STAFF_ONLY, ids=endpoint_id)
def test_staff_can_use_staff_endpoints(staff_client, customer_order, endpoint):
    # given
    order_id, product = customer_order
    method, path, body = endpoint
    path = path.format(order_id=order_id)
    if body is not None:
        body = {k: v.format(sku=product.sku) if isinstance(v, str) else v for k, v in body.items()}

    # when
    response = call(staff_client, method, path, body)

    # then
    assert response.status_code in (200, 201), response.content


@pytest.mark.django_db
def test_customer_can_read_products(customer_client, stocked_product):
    # given
    product = stocked_product()

    # when
    listed = customer_client.get("/api/v1/products/")
    detail = customer_client.get(f"/api/v1/products/{product.sku}/")

    # then
    assert listed.status_code == detail.status_code == 200


# Customers see only their own orders --------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["", "history/"])
def test_customer_cannot_see_another_customers_order(other_customer_client, customer_order, suffix):
    # given
    order_id, _ = customer_order

    # when
    response = other_customer_client.get(f"/api/v1/orders/{order_id}/{suffix}")

    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_customer_cannot_cancel_another_customers_order(other_customer_client, customer_order):
    # given
    order_id, product = customer_order

    # when
    response = call(other_customer_client, "post", f"/api/v1/orders/{order_id}/cancel/", {})

    # then
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert Order.objects.get(pk=order_id).status == OrderStatus.PENDING_PAYMENT
    assert StockItem.objects.get(product=product).reserved == 2


@pytest.mark.django_db
def test_customer_sees_own_order_and_its_history(customer_client, customer_order):
    # given
    order_id, _ = customer_order

    # when
    detail = customer_client.get(f"/api/v1/orders/{order_id}/")
    history = customer_client.get(f"/api/v1/orders/{order_id}/history/")

    # then
    assert detail.status_code == history.status_code == 200
    assert detail.json()["id"] == order_id
    assert [row["transition"] for row in history.json()] == ["place"]


@pytest.mark.django_db
def test_customer_order_list_holds_only_their_own_orders(
    customer_client, other_customer_client, stocked_product, place_order
):
    # given
    product = stocked_product(quantities={"main": 10})
    mine = [place_order(customer_client, [(product.sku, 1)]).json()["id"] for _ in range(2)]
    theirs = place_order(other_customer_client, [(product.sku, 1)]).json()["id"]

    # when
    my_list = customer_client.get("/api/v1/orders/")
    their_list = other_customer_client.get("/api/v1/orders/")

    # then
    assert sorted(order["id"] for order in my_list.json()["results"]) == sorted(mine)
    assert [order["id"] for order in their_list.json()["results"]] == [theirs]


@pytest.mark.django_db
def test_staff_see_every_customers_orders(
    staff_client, customer_client, other_customer_client, stocked_product, place_order
):
    # given
    product = stocked_product(quantities={"main": 10})
    mine = place_order(customer_client, [(product.sku, 1)]).json()["id"]
    theirs = place_order(other_customer_client, [(product.sku, 1)]).json()["id"]

    # when
    listed = staff_client.get("/api/v1/orders/")
    detail = staff_client.get(f"/api/v1/orders/{theirs}/")
    history = staff_client.get(f"/api/v1/orders/{mine}/history/")

    # then
    assert sorted(order["id"] for order in listed.json()["results"]) == sorted([mine, theirs])
    assert detail.status_code == history.status_code == 200


@pytest.mark.django_db
def test_staff_can_cancel_a_customers_order(staff_client, staff, customer_order):
    # given
    order_id, product = customer_order

    # when
    response = call(staff_client, "post", f"/api/v1/orders/{order_id}/cancel/", {})

    # then
    assert response.status_code == 200
    assert response.json()["status"] == OrderStatus.CANCELLED
    assert StockItem.objects.get(product=product).reserved == 0
    assert Order.objects.get(pk=order_id).status_changes.last().actor == staff
