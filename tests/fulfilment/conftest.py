"""Shared by the fulfilment tests: a fake warehouse with its callbacks off, orders
placed and routed there for real, and helpers that play the warehouse's callbacks."""

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from core.actors import Actor
from core.breakers import circuit_breakers_reset
from core.signing import sign
from fakes.warehouse import FakeWarehouse
from flows.pay import order_pay
from flows.place import OrderLineRequest, order_place
from flows.routing import order_route
from flows.transitions import order_transition_by_name
from fulfilment.models import Shipment
from orders.models import Order
from orders.states import OrderStatus
from payments.models import Payment
from tests.conftest import stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory
from tests.support.fake_stripe import FakeStripeServer
from tests.support.fake_warehouse import WAREHOUSE_SECRET

CALLBACK_URL = "/api/v1/fulfilment/callbacks/"
PROBLEM_JSON = "application/problem+json"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Way",
    "line2": "",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}


@pytest.fixture
def _fulfilment_settings(settings: Any) -> Iterator[None]:
    settings.FULFILMENT_CALLBACK_BASE_URL = "http://oms.test"
    settings.FULFILMENT_READ_TIMEOUT_SECONDS = 2.0
    circuit_breakers_reset()
    yield
    circuit_breakers_reset()


@pytest.fixture
def warehouse(fake_warehouse: FakeWarehouse) -> Any:
    fake_warehouse.configure(auto_callbacks=False)
    return WarehouseFactory(
        fulfilment_url=fake_warehouse.requests_url, fulfilment_secret=WAREHOUSE_SECRET
    )


@pytest.fixture
def confirmed_order(warehouse: Any) -> Callable[..., Order]:
    """confirmed_order(pay=None): placed, stock held at `warehouse`, confirmed (by an
    authorized payment when `pay` names a card, else directly)."""

    def make(pay: str | None = None) -> Order:
        product = ProductFactory(price=1999, name="Brass gear")
        stock_receive(product, warehouse, 5)
        order = order_place(
            customer=UserFactory(),
            email="ada@example.com",
            shipping_address=ADDRESS,
            lines=[OrderLineRequest(sku=product.sku, quantity=2)],
            actor=Actor.system(),
        )
        if pay is None:
            return order_transition_by_name(
                order_id=order.pk, transition="confirm", actor=Actor.system()
            )
        payment = order_pay(order_id=order.pk, payment_method=pay, actor=Actor.system())
        assert payment.status == Payment.Status.AUTHORIZED
        order.refresh_from_db()
        assert order.status == OrderStatus.CONFIRMED
        return order

    return make


@pytest.fixture
def routed_shipment(confirmed_order: Callable[..., Order]) -> Shipment:
    order = confirmed_order()
    order_route(order_id=order.pk)
    shipment = Shipment.objects.select_related("order", "warehouse").get(order=order)
    assert shipment.order.status == OrderStatus.ROUTED
    return shipment


@pytest.fixture
def stripe_provider(fake_stripe: FakeStripeServer, settings: Any) -> FakeStripeServer:
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.STRIPE_API_KEY = fake_stripe.api_key
    settings.PAYMENT_BREAKER_FAIL_MAX = 1000
    return fake_stripe


def event_body(shipment: Shipment, event: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": event,
        "event_id": f"evt_{event}_{shipment.pk}",
        "shipment_reference": shipment.reference,
        "request_id": str(shipment.fulfilment_request_id),
        "order_number": shipment.order.number,
        "warehouse_code": shipment.warehouse.code,
        "carrier": "DHL",
        "tracking_number": "JJD000390007123456",
        **extra,
    }


def callback(
    client: APIClient,
    body: dict[str, Any] | bytes,
    *,
    warehouse_code: str | None,
    secret: str = WAREHOUSE_SECRET,
    signed_at: int | None = None,
    signature: str | None = None,
) -> Any:
    """POST a callback as a warehouse would: the exact bytes, signed with `secret`."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {}
    if warehouse_code is not None:
        headers["HTTP_X_WAREHOUSE_CODE"] = warehouse_code
    if signature is None:
        signature = sign(raw, secret, signed_at if signed_at is not None else int(time.time()))
    if signature:
        headers["HTTP_X_OMS_SIGNATURE"] = signature
    return client.post(CALLBACK_URL, data=raw, content_type="application/json", **headers)


def shipped(client: APIClient, shipment: Shipment, **extra: Any) -> Any:
    return callback(
        client, event_body(shipment, "shipped", **extra), warehouse_code=shipment.warehouse.code
    )


def delivered(client: APIClient, shipment: Shipment) -> Any:
    return callback(
        client, event_body(shipment, "delivered"), warehouse_code=shipment.warehouse.code
    )


def refreshed(shipment: Shipment) -> tuple[str, str]:
    shipment.refresh_from_db()
    shipment.order.refresh_from_db()
    return shipment.status, shipment.order.status


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code)
    return body
