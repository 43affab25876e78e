"""A worker killed in the middle of a task: the broker redelivers it to the next worker,
and the warehouse, asked again with the same key, fulfils the shipment once."""

import json
import time

import pytest

from core.models import OutboxMessage
from fulfilment.models import FulfilmentRequest, Shipment
from notifications.models import EmailDelivery
from tests.support.worker import WORKER_ENV, wait_for
from tests.worker.conftest import (
    checkout,
    emails_received,
    fulfilments_by_key,
    history,
    order_status,
    smtp_env,
    staff_transition,
    wait_outbox_settled,
    warehouse_at,
)

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.smtp",
    "tests.support.fake_warehouse",
)

VISIBILITY_TIMEOUT = float(WORKER_ENV["CELERY_VISIBILITY_TIMEOUT_SECONDS"])


def unacked_tasks(client) -> list[tuple[dict, float]]:
    """The messages a worker took from Redis and has not acknowledged, with when."""
    delivered = dict(client.zrange("unacked_index", 0, -1, withscores=True))
    unacked = []
    for tag, raw in client.hgetall("unacked").items():
        message, _exchange, _routing_key = json.loads(raw)
        unacked.append((message, delivered[tag]))
    return unacked


@pytest.mark.django_db(transaction=True)
def test_killed_worker_mid_routing_redelivers_and_warehouse_gets_one_request_per_shipment(
    start_worker,
    celery_broker,
    fake_warehouses,
    stocked_product,
    customer_client,
    staff_client,
    smtp_server,
):
    # Given an order split over two warehouses, the first of which answers slowly
    slow = fake_warehouses(auto_callbacks=False, hang_seconds=10.0)
    quick = fake_warehouses(auto_callbacks=False)
    warehouse_at("wh-slow", slow)
    warehouse_at("wh-quick", quick)
    mug = stocked_product(quantities={"wh-slow": 5})
    cap = stocked_product(quantities={"wh-quick": 5})
    worker = start_worker(env=smtp_env(smtp_server))
    order = checkout(customer_client, [(mug.sku, 2), (cap.sku, 1)])
    slow.configure(mode="hang", count=1)

    # When staff confirm it and the worker dies (kill -9) while the slow warehouse,
    # which has already carried the request out, still holds its answer
    staff_transition(staff_client, order["id"], "confirm")
    wait_for(lambda: slow.requests(), worker=worker, what="the slow warehouse to be asked")
    worker.kill()

    # Then the routing task is still unacknowledged in Redis (acks_late)
    redis = celery_broker.client()
    route = OutboxMessage.objects.get(handler="fulfilment.route_order")
    in_flight = [
        (message, delivered_at)
        for message, delivered_at in unacked_tasks(redis)
        if message["headers"]["argsrepr"] == f"[{route.pk}]"
    ]
    assert len(in_flight) == 1, unacked_tasks(redis)
    message, delivered_at = in_flight[0]
    task_id = message["headers"]["id"]
    assert order_status(order["id"]) == "confirmed"

    # When a new worker starts after the visibility timeout (no sweeper runs)
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 0.2 - time.time()))
    replacement = start_worker(env=smtp_env(smtp_server))

    # Then the broker redelivers the same task and the order is routed
    wait_for(
        lambda: order_status(order["id"]) == "routed",
        worker=replacement,
        timeout=20,
        what="the redelivered task to route the order",
    )
    wait_outbox_settled(replacement)
    assert f"Task oms.core.outbox_handle[{task_id}] received" in replacement.log()
    assert OutboxMessage.objects.get(pk=route.pk).attempts == 2
    assert history(order["id"]) == [
        ("place", "pending_payment"),
        ("confirm", "confirmed"),
        ("route", "routed"),
    ]

    # And each warehouse fulfilled its shipment once: every request for it carried the
    # same key, and the repeat was answered as a replay
    requests = {
        request.warehouse.code: request
        for request in FulfilmentRequest.objects.filter(order_id=order["id"])
    }
    assert {code: r.status for code, r in requests.items()} == {
        "wh-slow": "accepted",
        "wh-quick": "accepted",
    }
    slow_seen = fulfilments_by_key(slow)
    assert list(slow_seen) == [requests["wh-slow"].idempotency_key]
    assert [(r["answered"], r["duplicate"]) for r in slow.requests()] == [
        (False, False),
        (True, True),
    ]
    assert list(fulfilments_by_key(quick)) == [requests["wh-quick"].idempotency_key]
    assert [r["duplicate"] for r in quick.requests()] == [False]
    assert len(slow.shipments()) == len(quick.shipments()) == 1
    assert sorted(Shipment.objects.values_list("reference", flat=True)) == sorted(
        [slow.shipments()[0]["shipment_reference"], quick.shipments()[0]["shipment_reference"]]
    )

    # And the confirmation email went out once, whichever worker sent it
    assert emails_received(smtp_server) == {(order["id"], EmailDelivery.Kind.ORDER_CONFIRMED): 1}
