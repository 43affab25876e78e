"""Payments over HTTP: the service talks to the session's fake Stripe server through a
fault-injecting proxy, and the tests look at what the provider holds afterwards.

Test modules that use these fixtures pull in the fake server and proxy plugins::

    pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import stripe
from django.db import connections
from rest_framework.test import APIClient

from core.breakers import circuit_breakers_reset
from inventory.models import Product, Reservation
from orders.models import Order
from orders.states import OrderStatus
from payments.models import Payment
from tests.conftest import new_idempotency_key, order_payload
from tests.support.fake_stripe import FakeStripeServer
from tests.support.fault_proxy import FaultProxy

WEBHOOK_SECRET = "whsec_test_payments_api"
PRICE = 2500
AUTHORIZE_PATH = r"^/v1/payment_intents$"
CAPTURE_PATH = r"^/v1/payment_intents/[^/]+/capture$"
CANCEL_PATH = r"^/v1/payment_intents/[^/]+/cancel$"
REFUND_PATH = r"^/v1/refunds$"
THREE_D_SECURE_CARD = "4000002500003155"
DECLINING_CARD = "pm_card_chargeCustomerFail"
GOOD_CARD = "pm_card_visa"
# Order statuses under which the order holds (or held) its money at the provider.
ORDER_STATUSES_TAKING_PAYMENT = (
    OrderStatus.CONFIRMED,
    OrderStatus.ROUTED,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
    OrderStatus.REFUNDED,
    OrderStatus.PARTIALLY_RETURNED,
    OrderStatus.RETURNED,
)
ORDER_STATUSES_CAPTURED = (
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
    OrderStatus.REFUNDED,
    OrderStatus.PARTIALLY_RETURNED,
    OrderStatus.RETURNED,
)


@dataclass
class ResponseHold:
    """One provider answer held back: the provider has acted, the caller still waits."""

    path: re.Pattern[str]
    method: str
    timeout: float
    answered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    body: bytes = b""
    taken: bool = False

    def intent(self) -> dict[str, Any]:
        """The object the provider answered with (wait for `answered` first)."""
        data: dict[str, Any] = json.loads(self.body)
        return data


class ProviderProxy(FaultProxy):
    """A FaultProxy that can also hold an answer after the provider produced it: the
    request is carried out, but its caller keeps waiting until the test releases it."""

    def __init__(self, upstream: str, **options: Any) -> None:
        super().__init__(upstream, **options)
        self._holds: list[ResponseHold] = []
        self._holds_lock = threading.Lock()

    def hold_response(
        self, *, path: str, method: str = "POST", timeout: float = 10.0
    ) -> ResponseHold:
        """Hold the next answer to a request matching `path` (at most `timeout` s)."""
        hold = ResponseHold(path=re.compile(path), method=method, timeout=timeout)
        with self._holds_lock:
            self._holds.append(hold)
        return hold

    def release_all(self) -> None:
        with self._holds_lock:
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.release.set()

    def _forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Any:
        response, from_upstream = super()._forward(method, path, headers, body)
        hold = self._hold_take(method, path)
        if hold is not None:
            hold.body = response.body
            hold.answered.set()
            hold.release.wait(hold.timeout)
        return response, from_upstream

    def _hold_take(self, method: str, path: str) -> ResponseHold | None:
        with self._holds_lock:
            for hold in self._holds:
                if hold.method == method and hold.path.search(path) and not hold.taken:
                    hold.taken = True
                    return hold
        return None

    def sent(self, path: str, method: str = "POST") -> list[Any]:
        """Recorded requests to `path` that reached the provider."""
        pattern = re.compile(path)
        return [
            request
            for request in self.requests
            if request.method == method and pattern.search(request.path) and request.forwarded
        ]


@pytest.fixture
def provider(fake_stripe: FakeStripeServer, settings: Any) -> Iterator[ProviderProxy]:
    """The payment provider as the service sees it: fake Stripe behind a ProviderProxy.

    Timeouts are short, the breaker is out of the way (tests that want it lower the
    limit and call circuit_breakers_reset) and the reconciler has no grace period.
    """
    circuit_breakers_reset()
    with ProviderProxy(upstream=fake_stripe.url) as proxy:
        settings.STRIPE_API_BASE = proxy.url
        settings.STRIPE_API_KEY = fake_stripe.api_key
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_CONNECT_TIMEOUT_SECONDS = 1.0
        settings.STRIPE_READ_TIMEOUT_SECONDS = 5.0
        settings.PAYMENT_BREAKER_FAIL_MAX = 1000
        settings.PAYMENT_BREAKER_RESET_SECONDS = 1
        settings.PAYMENT_RECONCILE_GRACE_SECONDS = 0
        try:
            yield proxy
        finally:
            proxy.release_all()
    circuit_breakers_reset()


@pytest.fixture
def product(stocked_product: Callable[..., Product]) -> Product:
    return stocked_product(quantities={"main": 20}, price=PRICE, currency="EUR")


@pytest.fixture
def checkout(product: Product) -> Callable[..., Any]:
    """POST /api/v1/orders/ for `quantity` units of the product, paying with `card`."""

    def post(
        client: APIClient,
        card: str | None = GOOD_CARD,
        *,
        key: str | None = None,
        quantity: int = 1,
    ) -> Any:
        payload = order_payload([(product.sku, quantity)])
        if card is not None:
            payload["payment_method"] = card
        return client.post(
            "/api/v1/orders/",
            payload,
            format="json",
            HTTP_IDEMPOTENCY_KEY=key or new_idempotency_key(),
        )

    return post


def order_action(
    client: APIClient,
    order_id: Any,
    action: str,
    data: dict[str, Any] | None = None,
    *,
    key: str | None = None,
) -> Any:
    """POST /api/v1/orders/{id}/{action}/ (pay, ship, refund, cancel) with a key."""
    return client.post(
        f"/api/v1/orders/{order_id}/{action}/",
        data or {},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or new_idempotency_key(),
    )


def history(order_id: Any) -> list[tuple[str, str]]:
    """The order's status changes as (transition, to_status), oldest first."""
    order = Order.objects.get(pk=order_id)
    return [
        (change.transition, change.to_status)
        for change in order.status_changes.order_by("created_at", "pk")
    ]


def stock_held(order_id: Any) -> bool:
    """Every line of the order still has its stock reserved."""
    reservations = Reservation.objects.filter(order_line__order_id=order_id)
    return reservations.exists() and all(
        reservation.status == Reservation.Status.HELD for reservation in reservations
    )


def signed_event(
    event_type: str,
    data_object: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    signed_at: int | None = None,
    event_id: str | None = None,
) -> tuple[str, str]:
    """A Stripe event as Stripe would deliver it: (JSON body, Stripe-Signature)."""
    body = json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2017-08-15",
            "created": int(time.time()),
            "type": event_type,
            "data": {"object": data_object},
        }
    )
    signature = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=signed_at)
    return body, signature


def webhook_post(client: APIClient, body: str, signature: str | None) -> Any:
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return client.post(
        "/api/v1/payments/stripe/webhook/", body, content_type="application/json", **headers
    )


def fake_post(fake_stripe: FakeStripeServer, path: str, data: dict[str, Any]) -> Any:
    """POST straight to the fake server (bypassing the proxy), e.g. its test-only routes."""
    response = requests.post(
        f"{fake_stripe.url}{path}",
        data=data,
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=(1.0, 5.0),
    )
    response.raise_for_status()
    return response.json()


def intent_retrieve(fake_stripe: FakeStripeServer, intent_id: str) -> dict[str, Any]:
    intent: dict[str, Any] = fake_stripe.client().v1.payment_intents.retrieve(intent_id).to_dict()
    return intent


def _charges(intent: dict[str, Any]) -> list[dict[str, Any]]:
    charges: list[dict[str, Any]] = (intent.get("charges") or {}).get("data") or []
    return charges


def provider_totals(fake_stripe: FakeStripeServer, order_id: Any) -> dict[str, int]:
    """What the provider holds for the order: live authorizations, captures, money."""
    intents = fake_stripe.payment_intents(order_id=str(order_id))
    captured_charges = [c for i in intents for c in _charges(i) if c.get("captured")]
    return {
        "intents": len(intents),
        "authorized": sum(1 for i in intents if i["status"] == "requires_capture"),
        "captures": len(captured_charges),
        "captured": sum(int(c["amount"]) for c in captured_charges),
        "refunded": sum(
            int(r["amount"])
            for c in captured_charges
            for r in (c.get("refunds") or {}).get("data") or []
        ),
        "canceled": sum(1 for i in intents if i["status"] == "canceled"),
    }


def assert_provider_consistent(fake_stripe: FakeStripeServer, order_id: Any) -> dict[str, int]:
    """The money invariants, read from the provider: per order at most one intent in
    requires_capture or succeeded, at most one capture, refunds never above the capture;
    a live authorization only for an order that took it, a capture only for one that
    shipped; and our Payment rows agree with the provider's amounts."""
    order = Order.objects.get(pk=order_id)
    intents = fake_stripe.payment_intents(order_id=str(order_id))
    live = [i for i in intents if i["status"] in ("requires_capture", "succeeded")]
    totals = provider_totals(fake_stripe, order_id)
    assert len(live) <= 1, [(i["id"], i["status"]) for i in intents]
    assert totals["captures"] <= 1, totals
    assert totals["refunded"] <= totals["captured"], totals
    if totals["authorized"]:
        assert order.status in ORDER_STATUSES_TAKING_PAYMENT, (order.status, totals)
    if totals["captures"]:
        assert order.status in ORDER_STATUSES_CAPTURED, (order.status, totals)
    payment = Payment.objects.filter(
        order=order, status__in=[Payment.Status.CAPTURED, Payment.Status.REFUNDED]
    ).first()
    if payment is not None:
        assert (payment.amount_captured, payment.amount_refunded) == (
            totals["captured"],
            totals["refunded"],
        )
        # A payment is refunded exactly when all that was captured was given back.
        fully_refunded = payment.amount_refunded == payment.amount_captured
        assert (payment.status == Payment.Status.REFUNDED) == fully_refunded, payment
    else:
        assert totals["captures"] == 0, totals
    return totals


def in_thread(call: Callable[[], Any], results: dict[str, Any], name: str) -> threading.Thread:
    """Run `call` in a thread (its own database connection); its result or exception
    lands in results[name]."""

    def run() -> None:
        try:
            results[name] = call()
        except BaseException as error:
            results[name] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
