"""The same outbox delivery with RabbitMQ as the broker (CELERY_BROKER_URL=amqp://...).

Uses the machine's RabbitMQ without changing it; messages left there by other runs name
outbox rows this database does not have, and a worker drops those as done.
"""

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from fulfilment.models import FulfilmentRequest
from notifications.models import EmailDelivery
from tests.support.worker import app_on_broker, wait_for
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

RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}//"


class _Broker:
    url = RABBITMQ_URL


@pytest.fixture
def celery_broker(settings: Any) -> Iterator[_Broker]:
    """Override the Redis broker of tests.support.worker with RabbitMQ for this module."""
    try:
        socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=1).close()
    except OSError:
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    with app_on_broker(RABBITMQ_URL, settings):
        yield _Broker()


@pytest.mark.django_db(transaction=True)
def test_rabbitmq_broker_delivers_routing_and_email_once(
    start_worker, fake_warehouses, stocked_product, customer_client, staff_client, smtp_server
):
    # Given a worker on RabbitMQ and a warehouse that accepts
    fake = fake_warehouses(auto_callbacks=False)
    warehouse_at("main", fake)
    product = stocked_product(quantities={"main": 3})
    worker = start_worker(env=smtp_env(smtp_server))

    # When an order is confirmed (paid offline, confirmed by staff)
    order = checkout(customer_client, [(product.sku, 1)])
    staff_transition(staff_client, order["id"], "confirm")

    # Then the worker routes it and emails the customer, once each
    wait_for(
        lambda: order_status(order["id"]) == "routed",
        worker=worker,
        timeout=30,
        what="the order to be routed",
    )
    wait_outbox_settled(worker)
    assert history(order["id"])[-1] == ("route", "routed")
    assert FulfilmentRequest.objects.get(order_id=order["id"]).status == "accepted"
    assert [len(requests) for requests in fulfilments_by_key(fake).values()] == [1]
    wait_for(lambda: emails_received(smtp_server), timeout=10, what="the email")
    assert emails_received(smtp_server) == {(order["id"], EmailDelivery.Kind.ORDER_CONFIRMED): 1}
