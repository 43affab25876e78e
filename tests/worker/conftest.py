"""Helpers for the real-worker tests: a worker on a private Redis, the fake warehouse,
fake Stripe and a loopback SMTP server, all on loopback.

Test modules load the plugins they use, e.g.::

    pytest_plugins = (
        "tests.support.redis_server",
        "tests.support.worker",
        "tests.support.smtp",
        "tests.support.fake_warehouse",
        "tests.support.fake_stripe",
    )
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from rest_framework.test import APIClient

from core.breakers import circuit_breakers_reset
from core.models import OutboxMessage
from fakes.warehouse import FakeWarehouse
from inventory.models import Reservation, Warehouse
from notifications.models import EmailDelivery
from orders.models import Order
from tests.conftest import new_idempotency_key, order_payload
from tests.support.fake_warehouse import FAST, WAREHOUSE_SECRET
from tests.support.worker import WorkerProcess, wait_for

if TYPE_CHECKING:
    # Plugins, loaded by the test modules: importing them here first would keep pytest
    # from rewriting their asserts.
    from tests.support.fake_stripe import FakeStripeServer
    from tests.support.smtp import SmtpServer

WEBHOOK_SECRET = "whsec_test_worker"
GOOD_CARD = "pm_card_visa"
_MESSAGE_ID = re.compile(r"<email-delivery-(\d+)\.")


def smtp_env(server: SmtpServer) -> dict[str, str]:
    """What a worker subprocess needs to send its emails to ``server``."""
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": server.host,
        "EMAIL_PORT": str(server.port),
        "EMAIL_HOST_USER": "",
        "EMAIL_HOST_PASSWORD": "",
        "EMAIL_USE_TLS": "false",
        "EMAIL_USE_SSL": "false",
    }


@pytest.fixture
def payments_at_fake_stripe(fake_stripe: FakeStripeServer, settings: Any) -> FakeStripeServer:
    """This process (and the workers started after it) pay at the session's fake Stripe."""
    circuit_breakers_reset()
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.STRIPE_API_KEY = fake_stripe.api_key
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_CONNECT_TIMEOUT_SECONDS = 1.0
    settings.STRIPE_READ_TIMEOUT_SECONDS = 5.0
    settings.PAYMENT_RECONCILE_GRACE_SECONDS = 0
    return fake_stripe


@pytest.fixture
def callbacks_to_live_server(live_server: Any, settings: Any) -> Any:
    """Warehouses call back to the live server (workers started after this read it)."""
    settings.FULFILMENT_CALLBACK_BASE_URL = live_server.url
    return live_server


@pytest.fixture
def fake_warehouses() -> Iterator[Callable[..., FakeWarehouse]]:
    """Start more fake warehouses in threads: ``fake_warehouses(auto_callbacks=False)``."""
    started: list[FakeWarehouse] = []

    def start(**behaviour: Any) -> FakeWarehouse:
        fake = FakeWarehouse(secret=WAREHOUSE_SECRET, **{**FAST, **behaviour}).start()
        started.append(fake)
        return fake

    try:
        yield start
    finally:
        for fake in started:
            fake.stop()


def warehouse_at(code: str, fake: FakeWarehouse | None, *, priority: int = 0) -> Warehouse:
    """A warehouse row served by ``fake`` (None: operated by hand)."""
    return Warehouse.objects.create(
        code=code,
        name=f"Warehouse {code}",
        priority=priority,
        fulfilment_url=fake.requests_url if fake else "",
        fulfilment_secret=WAREHOUSE_SECRET,
    )


def checkout(
    client: APIClient, lines: list[tuple[str, int]], *, card: str | None = None
) -> dict[str, Any]:
    """POST /api/v1/orders/ (paying with ``card`` if given); return the created order."""
    payload = order_payload(lines)
    if card is not None:
        payload["payment_method"] = card
    response = client.post(
        "/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY=new_idempotency_key()
    )
    assert response.status_code == 201, response.json()
    body: dict[str, Any] = response.json()
    return body


def staff_transition(client: APIClient, order_id: Any, transition: str) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/orders/{order_id}/transitions/",
        {"transition": transition, "reason": "paid offline"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )
    assert response.status_code == 200, response.json()
    body: dict[str, Any] = response.json()
    return body


def history(order_id: Any) -> list[tuple[str, str]]:
    """The order's status changes as (transition, to_status), oldest first."""
    order = Order.objects.get(pk=order_id)
    return [
        (change.transition, change.to_status)
        for change in order.status_changes.order_by("created_at", "pk")
    ]


def order_status(order_id: Any) -> str:
    return str(Order.objects.values_list("status", flat=True).get(pk=order_id))


def outbox_settled(order_ids: list[Any] | None = None) -> bool:
    """No outbox message (of these orders) is still to be handled."""
    open_messages = OutboxMessage.objects.exclude(
        status__in=[OutboxMessage.Status.DONE, OutboxMessage.Status.DEAD]
    )
    if order_ids is not None:
        open_messages = open_messages.filter(payload__order_id__in=[str(i) for i in order_ids])
    return not open_messages.exists()


def wait_outbox_settled(worker: WorkerProcess, timeout: float = 30.0) -> None:
    wait_for(outbox_settled, worker=worker, timeout=timeout, what="the outbox to drain")
    assert not OutboxMessage.objects.filter(status=OutboxMessage.Status.DEAD).exists(), list(
        OutboxMessage.objects.filter(status=OutboxMessage.Status.DEAD).values(
            "handler", "last_error"
        )
    )


def emails_received(server: SmtpServer) -> Counter[tuple[str, str]]:
    """How many messages the SMTP server accepted per (order id, email kind)."""
    received: Counter[tuple[str, str]] = Counter()
    for message in server.messages:
        match = _MESSAGE_ID.search(message.header("Message-ID"))
        assert match, message.header("Message-ID")
        delivery = EmailDelivery.objects.get(pk=int(match.group(1)))
        received[(str(delivery.order_id), delivery.kind)] += 1
    return received


def held_at(order_id: Any) -> dict[str, int]:
    """Units the order holds, per warehouse code."""
    held: Counter[str] = Counter()
    for reservation in Reservation.objects.filter(
        order_line__order_id=order_id, status=Reservation.Status.HELD
    ).select_related("stock_item__warehouse"):
        held[reservation.stock_item.warehouse.code] += reservation.quantity
    return dict(held)


def fulfilments_by_key(fake: FakeWarehouse) -> dict[str, list[dict[str, Any]]]:
    """The fake's fulfilment requests grouped by Idempotency-Key, oldest first."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for request in fake.requests():
        grouped.setdefault(str(request["idempotency_key"]), []).append(request)
    return grouped
