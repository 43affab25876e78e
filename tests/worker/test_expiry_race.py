"""Reservation expiry (the worker's periodic job) racing a late payment webhook (HTTP)
for the same orders: exactly one of them wins each order, and the loser leaves no trace:
an expired order holds no stock and no authorization, a confirmed one keeps both.

The race is made certain rather than hoped for: a test transaction holds the racing
orders' rows while the expiry job and the webhooks start, and lets go only once
PostgreSQL shows all of them waiting for those rows.
"""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import requests
import stripe
from django.db import connection, connections, transaction
from django.utils import timezone

from config.celery import app
from inventory.models import StockItem
from notifications.models import EmailDelivery
from orders.models import Order
from payments.models import Payment
from tests.conftest import assert_stock_consistent
from tests.support.worker import wait_for
from tests.worker.conftest import (
    WEBHOOK_SECRET,
    checkout,
    emails_received,
    held_at,
    history,
    order_status,
    outbox_settled,
    smtp_env,
    warehouse_at,
)

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.smtp",
    "tests.support.fake_stripe",
)

THREE_D_SECURE_CARD = "4000002500003155"
RACING_ORDERS = 4


def authenticate(fake_stripe: Any, order_id: str) -> dict[str, Any]:
    """The customer passes 3-D Secure: the intent is now authorized (requires_capture)."""
    (intent,) = fake_stripe.payment_intents(order_id=order_id)
    response = requests.post(
        f"{fake_stripe.url}/v1/payment_intents/{intent['id']}/_authenticate",
        data={"client_secret": intent["client_secret"], "success": "true"},
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=5,
    )
    response.raise_for_status()
    authorized: dict[str, Any] = (
        fake_stripe.client().v1.payment_intents.retrieve(intent["id"]).to_dict()
    )
    assert authorized["status"] == "requires_capture"
    return authorized


def webhook_deliver(live_server: Any, intent: dict[str, Any]) -> int:
    """POST payment_intent.amount_capturable_updated, signed, as Stripe would."""
    body = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2017-08-15",
            "created": int(time.time()),
            "type": "payment_intent.amount_capturable_updated",
            "data": {"object": intent},
        }
    )
    signature = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
    response = requests.post(
        f"{live_server.url}/api/v1/payments/stripe/webhook/",
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        timeout=10,
    )
    return response.status_code


@contextmanager
def rows_held(order_ids: list[str]) -> Iterator[None]:
    """Hold the orders' rows locked (another connection, in a thread) until exit."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(Order.objects.select_for_update().filter(pk__in=order_ids))
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(10), "could not lock the orders"
    try:
        yield
    finally:
        release.set()
        holder.join(10)


def lock_waiters() -> int:
    """Sessions of the test database waiting for a lock right now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def outcome(order_id: str) -> str:
    """What happened to the order after it was placed: confirm or expire, once."""
    transitions = [transition for transition, _ in history(order_id)]
    assert transitions[0] == "place"
    assert transitions[1:] in (["confirm"], ["expire"]), transitions
    return transitions[1]


@pytest.mark.django_db(transaction=True)
def test_reservation_expiry_racing_a_late_payment_webhook_lets_exactly_one_win(
    start_worker,
    payments_at_fake_stripe,
    live_server,
    stocked_product,
    customer_client,
    smtp_server,
):
    fake_stripe = payments_at_fake_stripe
    warehouse_at("main", None)  # operated by hand: a confirmed order stays confirmed
    product = stocked_product(quantities={"main": 20})
    worker = start_worker(env=smtp_env(smtp_server))

    # Given orders whose customers passed 3-D Secure, whose webhooks are late, and
    # whose reservations have run out
    orders = [
        checkout(
            customer_client,
            [(product.sku, 2)],
            card=fake_stripe.create_card(THREE_D_SECURE_CARD),
        )
        for _ in range(RACING_ORDERS + 2)
    ]
    assert {order["status"] for order in orders} == {"pending_payment"}
    intents = {order["id"]: authenticate(fake_stripe, order["id"]) for order in orders}
    Order.objects.filter(pk__in=list(intents)).update(
        reservation_expires_at=timezone.now() - timedelta(seconds=1)
    )
    webhook_first, expiry_first, *racing = [order["id"] for order in orders]

    # When one webhook arrives before the expiry job runs
    assert webhook_deliver(live_server, intents[webhook_first]) == 200

    # And the worker's expiry job and the other webhooks run at the same moment: the job
    # first waits for a racing order, then each webhook for its own
    answers = {}

    def deliver(order_id):
        try:
            answers[order_id] = webhook_deliver(live_server, intents[order_id])
        except Exception as error:
            answers[order_id] = error

    threads = [threading.Thread(target=deliver, args=(order_id,)) for order_id in racing]
    with rows_held(racing):
        app.send_task("oms.orders.expire_overdue", queue="default")
        wait_for(lambda: lock_waiters() == 1, worker=worker, what="the expiry job to wait")
        for thread in threads:
            thread.start()
        wait_for(
            lambda: lock_waiters() == 1 + len(racing),
            worker=worker,
            what="every webhook to wait for its order",
        )
    for thread in threads:
        thread.join(15)
    assert answers == {order_id: 200 for order_id in racing}

    # And the last webhook arrives only after its order expired
    wait_for(
        lambda: order_status(expiry_first) == "expired",
        worker=worker,
        what="the expiry job to expire the order without a webhook",
    )
    assert webhook_deliver(live_server, intents[expiry_first]) == 200

    # Then every order was either confirmed or expired, never both
    wait_for(outbox_settled, worker=worker, timeout=30, what="voids and emails")
    outcomes = {order_id: outcome(order_id) for order_id in intents}
    assert outcomes[webhook_first] == "confirm"
    assert outcomes[expiry_first] == "expire"
    # The job took the first racing order it waited for (its webhook queued behind it
    # and found it expired); the webhooks took the others before the job got to them.
    assert sorted(outcomes[order_id] for order_id in racing) == ["confirm"] * (len(racing) - 1) + [
        "expire"
    ]

    # And the winner's effects are whole, the loser's undone: a confirmed order holds its
    # stock and its authorization, an expired one released both
    for order_id, won in outcomes.items():
        payment = Payment.objects.get(order_id=order_id)
        (intent,) = fake_stripe.payment_intents(order_id=order_id)
        if won == "confirm":
            assert order_status(order_id) == "confirmed"
            assert held_at(order_id) == {"main": 2}
            assert (payment.status, intent["status"]) == ("authorized", "requires_capture")
        else:
            assert order_status(order_id) == "expired"
            assert held_at(order_id) == {}
            assert (payment.status, intent["status"]) == ("voided", "canceled")
    confirmed = [order_id for order_id, won in outcomes.items() if won == "confirm"]
    assert StockItem.objects.get(product=product).reserved == 2 * len(confirmed)
    assert_stock_consistent()

    # And only the confirmed orders were confirmed to their customers, once each
    assert emails_received(smtp_server) == {
        (order_id, EmailDelivery.Kind.ORDER_CONFIRMED): 1 for order_id in confirmed
    }
