"""One Idempotency-Key, many simultaneous requests: the use case runs once."""

from typing import Any

import pytest
import requests
from django.db.models import Sum

from core.actors import Actor
from core.models import IdempotencyKey
from flows.place import OrderLineRequest, order_place
from inventory.models import Reservation, StockItem, StockMovement
from orders.models import Order, OrderStatusChange
from orders.states import OrderStatus
from tests.conftest import api_key_for, assert_stock_consistent, order_payload, stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory

PROBLEM_JSON = "application/problem+json"
REQUESTS = 20


def auth_headers(user: Any, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key_for(user)}", "Idempotency-Key": key}


def assert_in_progress(response: Any) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert response.json()["code"] == "request_in_progress"


def assert_one_outcome(responses: list[Any], *, status: int, stored: IdempotencyKey) -> None:
    """Every response is the stored outcome (one fresh, the rest replays) or in progress."""
    assert not [r for r in responses if isinstance(r, BaseException)], responses
    assert stored.status == IdempotencyKey.Status.COMPLETED
    assert stored.response_status == status
    outcomes = [r for r in responses if r.status_code == status]
    fresh = [r for r in outcomes if r.headers.get("Idempotent-Replayed") != "true"]
    assert len(fresh) == 1
    for response in outcomes:
        assert response.json() == stored.response_body
    for response in responses:
        if response.status_code != status:
            assert_in_progress(response)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_same_idempotency_key_create_one_order(
    burst_live_server, concurrently
):
    # Given a customer and a SKU with 5 units
    customer = UserFactory()
    product = ProductFactory()
    item = stock_receive(product, WarehouseFactory(), 5)
    headers = auth_headers(customer, "same-key-for-all")
    body = order_payload([(product.sku, 2)])
    url = f"{burst_live_server.url}/api/v1/orders/"

    # When 20 identical checkouts with one key arrive at once
    responses = concurrently(
        [lambda: requests.post(url, json=body, headers=headers, timeout=120)] * REQUESTS
    )

    # Then one order exists, and every answer is that order or "still in progress"
    stored = IdempotencyKey.objects.get(user=customer, key="same-key-for-all")
    assert_one_outcome(responses, status=201, stored=stored)
    order = Order.objects.get()
    assert stored.response_body["id"] == str(order.pk)
    assert order.status == OrderStatus.PENDING_PAYMENT
    item.refresh_from_db()
    assert (item.on_hand, item.reserved) == (5, 2)
    assert Reservation.objects.aggregate(total=Sum("quantity"))["total"] == 2
    assert StockMovement.objects.filter(kind=StockMovement.Kind.RESERVE).count() == 1
    assert_stock_consistent([item.pk])

    # And a retry after the dust settles replays the same order
    replay = requests.post(url, json=body, headers=headers, timeout=30)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == stored.response_body


@pytest.mark.django_db(transaction=True)
def test_concurrent_cancels_with_same_idempotency_key_cancel_once(burst_live_server, concurrently):
    # Given a placed order holding 3 units
    customer = UserFactory()
    product = ProductFactory()
    item = stock_receive(product, WarehouseFactory(), 5)
    order = order_place(
        customer=customer,
        email="buyer@example.com",
        shipping_address=order_payload([])["shipping_address"],
        lines=[OrderLineRequest(product.sku, 3)],
        actor=Actor(user=customer),
    )
    headers = auth_headers(customer, "cancel-once")
    url = f"{burst_live_server.url}/api/v1/orders/{order.pk}/cancel/"

    # When 20 cancels with one key arrive at once
    responses = concurrently(
        [
            lambda: requests.post(
                url, json={"reason": "duplicate click"}, headers=headers, timeout=120
            )
        ]
        * REQUESTS
    )

    # Then the order is cancelled once and its stock released once
    stored = IdempotencyKey.objects.get(user=customer, key="cancel-once")
    assert_one_outcome(responses, status=200, stored=stored)
    assert stored.response_body["status"] == OrderStatus.CANCELLED
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert OrderStatusChange.objects.filter(order=order, transition="cancel").count() == 1
    assert StockMovement.objects.filter(kind=StockMovement.Kind.RELEASE).count() == 1
    item.refresh_from_db()
    assert (item.on_hand, item.reserved) == (5, 0)
    assert_stock_consistent([item.pk])
    assert StockItem.objects.get(pk=item.pk).available == 5
