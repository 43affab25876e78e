"""The broker goes down: checkouts keep working, their work waits in the outbox, and
once Redis and a worker are back every email and routing request happens once."""

import time

import pytest

from core.models import OutboxMessage
from fulfilment.models import FulfilmentRequest
from notifications.models import EmailDelivery
from tests.support.worker import wait_for
from tests.worker.conftest import (
    GOOD_CARD,
    checkout,
    emails_received,
    fulfilments_by_key,
    history,
    order_status,
    smtp_env,
    wait_outbox_settled,
    warehouse_at,
)

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.smtp",
    "tests.support.fake_warehouse",
    "tests.support.fake_stripe",
)

ORDERS_DURING_OUTAGE = 4
# A checkout while the broker is down must not hang on it.
CHECKOUT_MAX_SECONDS = 1.5


@pytest.mark.django_db(transaction=True)
def test_checkout_succeeds_while_redis_is_down_and_backlog_drains_exactly_once(
    start_worker,
    celery_broker,
    payments_at_fake_stripe,
    fake_warehouses,
    stocked_product,
    customer_client,
    smtp_server,
):
    fake = fake_warehouses(auto_callbacks=False)
    warehouse_at("main", fake)
    product = stocked_product(quantities={"main": 20}, price=1500)

    # Given an order paid while no worker ran: its messages were handed to Redis...
    early = checkout(customer_client, [(product.sku, 1)], card=GOOD_CARD)
    assert early["status"] == "confirmed"
    early_messages = OutboxMessage.objects.filter(payload__order_id=early["id"])
    assert {m.status for m in early_messages} == {OutboxMessage.Status.DISPATCHED}
    assert celery_broker.client().llen("routing") == 1

    # ...when Redis goes down, losing what it held (no persistence)
    celery_broker.stop()

    # When customers check out and pay during the outage
    orders, durations = [], []
    for _ in range(ORDERS_DURING_OUTAGE):
        started = time.monotonic()
        orders.append(checkout(customer_client, [(product.sku, 2)], card=GOOD_CARD))
        durations.append(time.monotonic() - started)

    # Then every checkout succeeds without waiting for the broker, its work pending
    assert [order["status"] for order in orders] == ["confirmed"] * ORDERS_DURING_OUTAGE
    assert max(durations) < CHECKOUT_MAX_SECONDS, durations
    outage_messages = OutboxMessage.objects.filter(
        payload__order_id__in=[order["id"] for order in orders]
    )
    assert outage_messages.count() == 2 * ORDERS_DURING_OUTAGE  # an email and a routing
    assert {m.status for m in outage_messages} == {OutboxMessage.Status.PENDING}

    # When Redis comes back (empty) on the same port and a worker with its sweeper starts
    celery_broker.start()
    worker = start_worker(env=smtp_env(smtp_server), beat=True)

    # Then the backlog drains, including the messages Redis lost (their lease ran out)
    all_orders = [early, *orders]
    order_ids = [order["id"] for order in all_orders]
    wait_for(
        lambda: all(order_status(order_id) == "routed" for order_id in order_ids),
        worker=worker,
        timeout=30,
        what="every order to be routed",
    )
    wait_outbox_settled(worker)
    for order_id in order_ids:
        assert history(order_id) == [
            ("place", "pending_payment"),
            ("confirm", "confirmed"),
            ("route", "routed"),
        ]

    # And each order got one confirmation email and one fulfilment at the warehouse
    assert emails_received(smtp_server) == {
        (order_id, EmailDelivery.Kind.ORDER_CONFIRMED): 1 for order_id in order_ids
    }
    keys = {
        request.idempotency_key: str(request.order_id)
        for request in FulfilmentRequest.objects.filter(order_id__in=order_ids)
    }
    assert sorted(keys.values()) == sorted(order_ids)
    seen = fulfilments_by_key(fake)
    assert set(seen) == set(keys)
    assert all(
        [r["duplicate"] for r in requests] == [False] + [True] * (len(requests) - 1)
        for requests in seen.values()
    ), seen
    assert len(fake.shipments()) == len(order_ids)
