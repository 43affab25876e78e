"""The order events issue, end to end through the real path: the API under uvicorn, a
real Celery worker on the test's own redis-server, fake Stripe and a fake warehouse that
ships and delivers by itself, calling back to that API. A customer's stream of the order
sees every change as it happens, drops, resumes with Last-Event-ID and misses nothing.
"""

import json
import time

import pytest

from tests.conftest import api_key_for, new_idempotency_key, order_payload
from tests.support.asgi_server import open_stream
from tests.support.worker import app_process_env, wait_for
from tests.worker.conftest import GOOD_CARD, order_status, outbox_settled, warehouse_at

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.fake_warehouse",
    "tests.support.fake_stripe",
    "tests.support.asgi_server",
)

# Generous for a busy machine: the order's whole life usually takes a second or two.
LIFE = 30.0
ORDER_CHANGES = [
    "order.created",
    "order.confirmed",
    "order.routed",
    "order.shipped",
    "order.delivered",
]


@pytest.mark.django_db(transaction=True)
def test_a_stream_follows_a_paid_order_through_the_worker_and_resumes_without_gap(
    celery_broker,
    start_worker,
    start_asgi_server,
    payments_at_fake_stripe,
    fake_warehouses,
    stocked_product,
    customer,
    settings,
):
    # Given the API under uvicorn publishing to this test's broker, a worker on it whose
    # warehouse ships and delivers by itself, calling back to that API
    server = start_asgi_server(
        env={
            **app_process_env(celery_broker),
            # Only a NOTIFY wake-up is prompt; heartbeats show a quiet stream.
            "ORDER_EVENT_POLL_SECONDS": "30",
            "ORDER_EVENT_STREAM_HEARTBEAT_SECONDS": "1",
        }
    )
    settings.FULFILMENT_CALLBACK_BASE_URL = server.url
    worker = start_worker()
    warehouse_at("main", fake_warehouses(callback_timeout=10.0, callback_attempts=10))
    product = stocked_product(quantities={"main": 5}, price=2500)
    key = api_key_for(customer)

    # When the customer places an order over HTTP and follows its stream
    status, order = server.post(
        "/api/v1/orders/",
        order_payload([(product.sku, 2)]),
        key=key,
        headers={"Idempotency-Key": new_idempotency_key()},
    )
    assert status == 201, order
    path = f"/api/v1/orders/{order['id']}/stream/"
    stream = open_stream(server, path, key=key, timeout=LIFE)
    assert stream.status == 200
    seen = stream.events_until("order.created", timeout=LIFE)

    # And pays for it
    status, paid = server.post(
        f"/api/v1/orders/{order['id']}/pay/",
        {"payment_method": GOOD_CARD},
        key=key,
        headers={"Idempotency-Key": new_idempotency_key()},
        timeout=LIFE,
    )
    assert status == 200, paid

    # Then the stream sees the payment confirm it and the worker route it, as they
    # happen; the client drops there
    seen += stream.events_until("order.routed", timeout=LIFE)
    stream.close()

    # When it comes back with the last id it got, while the warehouse ships and delivers
    resumed = open_stream(server, path, key=key, last_event_id=seen[-1].id, timeout=LIFE)
    try:
        assert resumed.status == 200
        seen += resumed.events_until("order.delivered", timeout=LIFE)
        wait_for(
            lambda: order_status(order["id"]) == "delivered" and outbox_settled([order["id"]]),
            worker=worker,
            timeout=LIFE,
            what="the order's work to settle",
        )
        status, page = server.get(f"/api/v1/orders/{order['id']}/events/?limit=100", key=key)
        assert status == 200
        logged = page["events"]
        deadline = time.monotonic() + LIFE
        while len(seen) < len(logged):
            seen.append(resumed.next_event(deadline))
        # (and after the last one, nothing but heartbeats)
        assert resumed.next_comment() == "heartbeat"
    finally:
        resumed.close()

    # Then it got the order's whole log once, in sequence order with no gap, each id the
    # event's sequence
    bodies = [json.loads(event.data) for event in seen]
    assert [body["sequence"] for body in bodies] == list(range(1, len(logged) + 1))
    assert [event.id for event in seen] == [str(body["sequence"]) for body in bodies]
    assert [event.event for event in seen] == [body["type"] for body in bodies]
    assert [body["id"] for body in bodies] == [event["id"] for event in logged]
    assert [t for t in (body["type"] for body in bodies) if t.startswith("order.")] == (
        ORDER_CHANGES
    )
    assert {body["order_id"] for body in bodies} == {order["id"]}
    assert bodies[-1]["data"]["order"]["status"] == "delivered"
