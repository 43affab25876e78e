"""The same outbox delivery with RabbitMQ as the broker (CELERY_BROKER_URL=amqp://...).

Uses the machine's RabbitMQ in a vhost of the test's own (tests.support.rabbitmq),
where the task queues are quorum queues.
"""

import pytest

from fulfilment.models import FulfilmentRequest
from notifications.models import EmailDelivery
from tests.support.rabbitmq import RabbitMQBroker
from tests.support.worker import wait_for
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
    "tests.support.rabbitmq",
)


@pytest.fixture
def celery_broker(rabbitmq_broker: RabbitMQBroker) -> RabbitMQBroker:
    return rabbitmq_broker


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
