"""RabbitMQ as the broker: the task queues are durable quorum queues, publishes are
confirmed, a worker killed (kill -9) mid-task has its message redelivered at once and
handled once, and a retry's countdown is kept by the broker (native delayed delivery)."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from core.models import OutboxMessage
from fulfilment.models import FulfilmentRequest
from tests.support.rabbitmq import RabbitMQBroker, rabbitmq_channels, rabbitmq_queues
from tests.support.worker import wait_for
from tests.worker.conftest import (
    checkout,
    fulfilments_by_key,
    history,
    order_status,
    staff_transition,
    wait_outbox_settled,
    warehouse_at,
)

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.fake_warehouse",
    "tests.support.rabbitmq",
)


@pytest.fixture
def celery_broker(rabbitmq_broker: RabbitMQBroker) -> RabbitMQBroker:
    return rabbitmq_broker


def routing_queue_holds(vhost: str, *, ready: int, unacknowledged: int) -> bool:
    """Whether the routing queue holds these counts (a quorum queue's are a moment late)."""
    queue = rabbitmq_queues(vhost)["routing"]
    return (queue["messages_ready"], queue["messages_unacknowledged"]) == (ready, unacknowledged)


def task_queues_empty(vhost: str) -> bool:
    counts = {
        name: (queue["messages_ready"], queue["messages_unacknowledged"])
        for name, queue in rabbitmq_queues(vhost).items()
        if name in settings.TASK_QUEUES
    }
    return counts == dict.fromkeys(settings.TASK_QUEUES, (0, 0))


@pytest.mark.django_db(transaction=True)
def test_task_queues_are_durable_quorum_queues_and_publishes_are_confirmed(
    start_worker, celery_broker, stocked_product, customer_client, staff_client
):
    # Given a worker on RabbitMQ (it declares the queues it consumes)
    warehouse_at("main", None)
    product = stocked_product(quantities={"main": 3})
    worker = start_worker()

    # Then every task queue is a durable quorum queue, and the worker consumes each
    queues = rabbitmq_queues(celery_broker.vhost)
    for name in settings.TASK_QUEUES:
        assert queues[name]["type"] == "quorum", queues[name]
        assert queues[name]["durable"] is True, queues[name]
    wait_for(
        lambda: all(
            queue["consumers"] == 1
            for name, queue in rabbitmq_queues(celery_broker.vhost).items()
            if name in settings.TASK_QUEUES
        ),
        worker=worker,
        timeout=10,
        what="a consumer on each task queue",
    )
    # and the delayed-delivery queues that carry countdowns (retry backoff) are quorum too
    delayed = {name: queue for name, queue in queues.items() if name.startswith("celery_delayed")}
    assert len(delayed) == 28
    assert {queue["type"] for queue in delayed.values()} == {"quorum"}

    # When this process publishes an outbox message (an order confirmed by staff)
    order = checkout(customer_client, [(product.sku, 1)])
    staff_transition(staff_client, order["id"], "confirm")
    wait_outbox_settled(worker)

    # Then it published on a channel in confirm mode (publisher confirms), and the worker
    # handled every message: none is left in any queue
    assert any(channel["confirm"] for channel in rabbitmq_channels(celery_broker.vhost))
    wait_for(
        lambda: task_queues_empty(celery_broker.vhost),
        timeout=10,
        what="every task queue to be empty and acknowledged",
    )


@pytest.mark.django_db(transaction=True)
def test_killed_worker_mid_task_is_redelivered_at_once_and_handled_once(
    start_worker, celery_broker, fake_warehouses, stocked_product, customer_client, staff_client
):
    # Given a worker on RabbitMQ and a warehouse that carries a request out but hangs
    # before it answers
    slow = fake_warehouses(auto_callbacks=False, hang_seconds=30.0)
    warehouse_at("wh-slow", slow)
    product = stocked_product(quantities={"wh-slow": 5})
    worker = start_worker(env={"FULFILMENT_READ_TIMEOUT_SECONDS": "60"})
    order = checkout(customer_client, [(product.sku, 2)])
    slow.configure(mode="hang", count=1)

    # When staff confirm the order and the worker dies (kill -9) while routing it
    staff_transition(staff_client, order["id"], "confirm")
    wait_for(lambda: slow.requests(), worker=worker, what="the warehouse to be asked")
    route = OutboxMessage.objects.get(handler="fulfilment.route_order")
    wait_for(
        lambda: routing_queue_holds(celery_broker.vhost, ready=0, unacknowledged=1),
        timeout=10,
        what="the routing task to be delivered and not acknowledged",
    )
    worker.kill()

    # Then RabbitMQ puts the unacknowledged task back in the queue at once (acks_late:
    # the connection closed; no visibility timeout to wait for) and the order waits
    wait_for(
        lambda: routing_queue_holds(celery_broker.vhost, ready=1, unacknowledged=0),
        timeout=10,
        what="the routing task to be back in its queue",
    )
    assert order_status(order["id"]) == "confirmed"

    # When a new worker starts
    replacement = start_worker()

    # Then it gets the same task and routes the order, once
    wait_for(
        lambda: order_status(order["id"]) == "routed",
        worker=replacement,
        timeout=20,
        what="the redelivered task to route the order",
    )
    wait_outbox_settled(replacement)
    assert OutboxMessage.objects.get(pk=route.pk).attempts == 2
    assert history(order["id"]) == [
        ("place", "pending_payment"),
        ("confirm", "confirmed"),
        ("route", "routed"),
    ]
    # And the warehouse, asked twice with the same key, fulfils the shipment once
    request = FulfilmentRequest.objects.get(order_id=order["id"])
    assert request.status == "accepted"
    assert list(fulfilments_by_key(slow)) == [request.idempotency_key]
    assert [(r["answered"], r["duplicate"]) for r in slow.requests()] == [
        (False, False),
        (True, True),
    ]
    assert len(slow.shipments()) == 1
    wait_for(
        lambda: routing_queue_holds(celery_broker.vhost, ready=0, unacknowledged=0),
        timeout=10,
        what="the routing task to be acknowledged",
    )


def task_log(worker_log: str, task_id: str) -> list[tuple[datetime, str]]:
    """The worker's JSON log lines about the task: (time, message), oldest first. The
    times are the log's local clock read as UTC: only their differences matter."""
    lines = []
    for line in worker_log.splitlines():
        if line.startswith("{") and task_id in (record := json.loads(line))["message"]:
            logged = datetime.strptime(record["time"], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
            lines.append((logged, record["message"]))
    return lines


@pytest.mark.django_db(transaction=True)
def test_retry_countdown_waits_in_the_broker_not_in_the_worker(
    start_worker, celery_broker, fake_warehouses, stocked_product, customer_client, staff_client
):
    # Given a worker on RabbitMQ and a warehouse whose first answer is a 500
    fake = fake_warehouses(auto_callbacks=False)
    warehouse_at("main", fake)
    product = stocked_product(quantities={"main": 5})
    worker = start_worker(env={"OUTBOX_RETRY_BACKOFF_MAX_SECONDS": "3"})
    order = checkout(customer_client, [(product.sku, 1)])
    fake.configure(mode="error500", count=1)

    # When staff confirm the order: routing fails once and is retried with a countdown
    staff_transition(staff_client, order["id"], "confirm")
    wait_for(
        lambda: order_status(order["id"]) == "routed",
        worker=worker,
        timeout=30,
        what="the retried task to route the order",
    )
    wait_outbox_settled(worker)
    route = OutboxMessage.objects.get(handler="fulfilment.route_order")
    assert route.attempts == 2

    # Then the retry came back from the broker's delayed-delivery queues once its
    # countdown was over (quorum queues: the worker does not hold a task for later)
    log = worker.log()
    assert "Direct exchanges are not supported" not in log
    retry = re.search(r"outbox_handle\[([0-9a-f-]+)\] retry: Retry in (\d+)s", log)
    assert retry, log
    task_id, countdown = retry[1], int(retry[2])
    events = task_log(log, task_id)
    retried_at = next(when for when, message in events if "retry: Retry in" in message)
    received_again = [when for when, message in events if "received" in message][1]
    assert received_again - retried_at >= timedelta(seconds=countdown - 0.5), events
    assert [r["mode"] for r in fake.requests()] == ["error500", "accept"]
