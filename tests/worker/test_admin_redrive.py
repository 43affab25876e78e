"""A message that died while a warehouse was down, re-driven from the admin once it is
back: a real worker on a real broker routes the order, and the dead letter is resolved."""

import pytest
from django.test import Client

from core.models import DeadLetter, OutboxMessage
from fulfilment.models import FulfilmentRequest
from tests.factories import StaffFactory
from tests.support.worker import wait_for
from tests.worker.conftest import (
    checkout,
    order_status,
    staff_transition,
    warehouse_at,
)

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.fake_warehouse",
)


def route_message(order_id: str) -> OutboxMessage:
    return OutboxMessage.objects.get(handler="fulfilment.route_order", payload__order_id=order_id)


@pytest.mark.django_db(transaction=True)
def test_dead_routing_message_redriven_from_the_admin_is_handled_by_the_worker(
    start_worker, fake_warehouses, stocked_product, customer_client, staff_client
):
    # Given a warehouse that answers 500 to the next two requests, and a worker that
    # gives a message two attempts
    fake = fake_warehouses(auto_callbacks=False)
    warehouse_at("main", fake)
    product = stocked_product(quantities={"main": 5})
    fake.configure(mode="error500", count=2)
    worker = start_worker(env={"OUTBOX_MAX_ATTEMPTS": "2"})
    order = checkout(customer_client, [(product.sku, 1)])
    staff_transition(staff_client, order["id"], "confirm")
    wait_for(
        lambda: route_message(order["id"]).status == OutboxMessage.Status.DEAD,
        worker=worker,
        timeout=30,
        what="the routing message to die",
    )
    assert order_status(order["id"]) == "confirmed"
    dead = DeadLetter.objects.get(outbox_message=route_message(order["id"]))

    # When staff re-drive it from the outbox admin, confirming
    admin = Client()
    admin.force_login(StaffFactory(is_superuser=True))
    response = admin.post(
        "/admin/core/outboxmessage/",
        {
            "action": "redrive",
            "_selected_action": [route_message(order["id"]).pk],
            "post": "yes",
        },
        follow=True,
    )

    # Then the worker routes the order on the warehouse that is back
    assert "Re-drove 1 message(s)." in response.content.decode()
    wait_for(
        lambda: order_status(order["id"]) == "routed",
        worker=worker,
        timeout=30,
        what="the order to be routed",
    )
    message = route_message(order["id"])
    assert (message.status, message.attempts) == (OutboxMessage.Status.DONE, 1)
    assert FulfilmentRequest.objects.get(order_id=order["id"]).status == "accepted"
    assert [r["status"] for r in fake.requests()] == [500, 500, 201]
    dead.refresh_from_db()
    assert dead.redriven_at is not None
    assert DeadLetter.objects.count() == 1
