"""Hostile input through the HTTP API: each module is one class of input that used to
answer 500. Every refusal is problem+json with a stable code and changes nothing."""

from typing import Any

from django.db.models import Sum

from core.models import IdempotencyKey, OutboxMessage
from inventory.models import Product, StockItem, StockMovement, Warehouse
from orders.models import Order, OrderStatusChange
from payments.models import Payment, StripeEvent

# Fixtures of the fulfilment and payments tests, for the signed callback and webhook.
from tests.fulfilment.conftest import (  # noqa: F401
    _fulfilment_settings,
    confirmed_order,
    routed_shipment,
    warehouse,
)
from tests.payments.conftest import checkout, product, provider  # noqa: F401

PROBLEM_JSON = "application/problem+json"


def stored_state() -> dict[str, Any]:
    """What a request could have changed: counts of every kind of row it could write,
    the stock counters, and each order's status."""
    return {
        "orders": dict(Order.objects.values_list("pk", "status")),
        "status_changes": OrderStatusChange.objects.count(),
        "payments": list(Payment.objects.order_by("pk").values_list("pk", "status")),
        "stock": StockItem.objects.aggregate(on_hand=Sum("on_hand"), reserved=Sum("reserved")),
        "stock_movements": StockMovement.objects.count(),
        "products": Product.objects.count(),
        "warehouses": Warehouse.objects.count(),
        "idempotency_keys": IdempotencyKey.objects.count(),
        "stripe_events": StripeEvent.objects.count(),
        "outbox": OutboxMessage.objects.count(),
    }


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is a problem document with this status and code."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith(PROBLEM_JSON), response["Content-Type"]
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    return body
