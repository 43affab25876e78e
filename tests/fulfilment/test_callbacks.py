"""POST /api/v1/fulfilment/callbacks/: signed shipped / delivered reports from warehouses.

Orders are routed for real (order_route against an in-process fake warehouse with its
own callbacks off); the tests then play the warehouse and sign callbacks themselves.
"""

import time

import pytest

from core.actors import Actor
from core.models import OutboxMessage
from core.outbox import outbox_handle
from core.signing import sign
from flows.place import OrderLineRequest, order_place
from flows.routing import order_route
from flows.transitions import order_transition_by_name
from fulfilment.models import Shipment
from inventory.models import Reservation
from notifications.models import EmailDelivery
from orders.models import Order
from orders.states import OrderStatus
from payments.models import Payment
from tests.conftest import assert_stock_consistent, stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory
from tests.fulfilment.conftest import (
    ADDRESS,
    assert_problem,
    callback,
    delivered,
    event_body,
    refreshed,
    shipped,
)
from tests.support.fake_warehouse import WAREHOUSE_SECRET, wait_until

pytest_plugins = (
    "tests.support.fake_warehouse",
    "tests.support.smtp",
    "tests.support.fake_stripe",
)
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("_fulfilment_settings")]


# Shipped and delivered.


def test_shipped_callback_captures_payment_ships_the_order_and_emails_the_tracking(
    stripe_provider,
    confirmed_order,
    anonymous_client,
    smtp_backend,
    django_capture_on_commit_callbacks,
):
    order = confirmed_order(pay="pm_card_visa")
    order_route(order_id=order.pk)
    shipment = Shipment.objects.select_related("order", "warehouse").get(order=order)

    with django_capture_on_commit_callbacks(execute=True):
        response = shipped(anonymous_client, shipment)

    assert response.status_code == 200, response.content
    assert response.json() == {"shipment_reference": shipment.reference, "status": "shipped"}
    shipment.refresh_from_db()
    assert (shipment.status, shipment.carrier, shipment.tracking_number) == (
        "shipped",
        "DHL",
        "JJD000390007123456",
    )
    assert shipment.shipped_at is not None
    message = OutboxMessage.objects.get(topic="shipment.shipped")
    assert (message.handler, message.status) == ("fulfilment.ship_order", "done")
    assert message.payload == {"order_id": str(order.pk), "shipment_id": shipment.pk}
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.amount_captured) == ("captured", order.total_amount)
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED
    assert [c.transition for c in order.status_changes.order_by("created_at", "pk")] == [
        "place",
        "confirm",
        "route",
        "ship",
    ]
    assert set(
        Reservation.objects.filter(order_line__order=order).values_list("status", flat=True)
    ) == {"committed"}
    assert_stock_consistent()
    (email,) = smtp_backend.messages
    assert email.header("To") == "ada@example.com"
    assert email.header("Subject") == f"Your order {order.number} has shipped"
    assert "DHL" in email.text
    assert "JJD000390007123456" in email.text
    assert EmailDelivery.objects.get(order=order).kind == EmailDelivery.Kind.ORDER_SHIPPED


def test_delivered_callback_delivers_the_shipped_order(
    routed_shipment, anonymous_client, smtp_backend, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        shipped(anonymous_client, routed_shipment)
    assert refreshed(routed_shipment) == ("shipped", "shipped")

    with django_capture_on_commit_callbacks(execute=True):
        response = delivered(anonymous_client, routed_shipment)

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "delivered"
    assert refreshed(routed_shipment) == ("delivered", "delivered")
    assert routed_shipment.delivered_at is not None
    deliver = routed_shipment.order.status_changes.get(transition="deliver")
    assert (deliver.actor_label, deliver.reason) == ("system", "warehouse delivered")


def test_delivered_before_shipped_still_ships_then_delivers(
    routed_shipment, anonymous_client, smtp_backend, django_capture_on_commit_callbacks
):
    # The shipped callback was lost; delivered implies it.
    with django_capture_on_commit_callbacks(execute=True):
        response = delivered(anonymous_client, routed_shipment)

    assert response.status_code == 200, response.content
    assert refreshed(routed_shipment) == ("delivered", "delivered")
    assert OutboxMessage.objects.filter(topic="shipment.shipped").count() == 1
    assert [
        c.transition for c in routed_shipment.order.status_changes.order_by("created_at", "pk")
    ][-2:] == ["ship", "deliver"]


def test_delivery_reported_before_the_deferred_ship_step_still_delivers_the_order(
    routed_shipment, anonymous_client, smtp_backend
):
    # Given shipped and delivered reports whose follow-up work has not run yet, and the
    # order shipped by another path meanwhile (a capture webhook, or staff)
    assert shipped(anonymous_client, routed_shipment).status_code == 200
    assert delivered(anonymous_client, routed_shipment).status_code == 200
    assert refreshed(routed_shipment) == ("delivered", "routed")
    order_transition_by_name(
        order_id=routed_shipment.order_id, transition="ship", actor=Actor.system()
    )

    # When the deferred ship step runs
    message = OutboxMessage.objects.get(topic="shipment.shipped")
    outbox_handle(message.pk)

    # Then the delivery already reported moves the order on
    assert refreshed(routed_shipment) == ("delivered", "delivered")
    assert [
        c.transition for c in routed_shipment.order.status_changes.order_by("created_at", "pk")
    ][-2:] == ["ship", "deliver"]


def test_repeated_callbacks_change_nothing(routed_shipment, anonymous_client):
    first = shipped(anonymous_client, routed_shipment)
    again = shipped(anonymous_client, routed_shipment, tracking_number="CHANGED")

    assert first.status_code == again.status_code == 200
    assert again.json()["status"] == "shipped"
    routed_shipment.refresh_from_db()
    assert routed_shipment.tracking_number == "JJD000390007123456"
    assert OutboxMessage.objects.filter(topic="shipment.shipped").count() == 1

    delivered(anonymous_client, routed_shipment)
    shipped_at = Shipment.objects.get(pk=routed_shipment.pk).delivered_at
    for response in (
        delivered(anonymous_client, routed_shipment),
        shipped(anonymous_client, routed_shipment),
    ):
        assert response.status_code == 200
        assert response.json()["status"] == "delivered"
    routed_shipment.refresh_from_db()
    assert routed_shipment.delivered_at == shipped_at
    assert OutboxMessage.objects.filter(topic="shipment.shipped").count() == 1


# Rejected callbacks: nothing stored.


def assert_nothing_stored(shipment: Shipment) -> None:
    assert refreshed(shipment) == ("accepted", "routed")
    assert (shipment.carrier, shipment.tracking_number, shipment.shipped_at) == ("", "", None)
    assert not OutboxMessage.objects.filter(topic="shipment.shipped").exists()


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("wrong secret", {"secret": "whsec_not_the_warehouse"}),
        ("no signature", {"signature": ""}),
        ("garbled signature", {"signature": "t=abc,v1=00"}),
        ("stale signature", {"signed_at": int(time.time()) - 3600}),
    ],
)
def test_badly_signed_callback_is_refused(routed_shipment, anonymous_client, case, kwargs):
    response = callback(
        anonymous_client,
        event_body(routed_shipment, "shipped"),
        warehouse_code=routed_shipment.warehouse.code,
        **kwargs,
    )

    assert_problem(response, 401, "callback_signature_invalid")
    assert_nothing_stored(routed_shipment)


@pytest.mark.parametrize("code", [None, "", "no-such-warehouse"])
def test_callback_from_an_unknown_warehouse_is_refused(routed_shipment, anonymous_client, code):
    response = callback(
        anonymous_client, event_body(routed_shipment, "shipped"), warehouse_code=code
    )

    assert_problem(response, 401, "callback_signature_invalid")
    assert_nothing_stored(routed_shipment)


def test_callback_signed_by_another_warehouse_is_refused(routed_shipment, anonymous_client):
    other = WarehouseFactory(fulfilment_url="http://127.0.0.1:9/x", fulfilment_secret="other")

    response = callback(
        anonymous_client,
        event_body(routed_shipment, "shipped"),
        warehouse_code=routed_shipment.warehouse.code,
        secret=other.fulfilment_secret,
    )

    assert_problem(response, 401, "callback_signature_invalid")
    assert_nothing_stored(routed_shipment)


def test_warehouse_without_a_secret_cannot_call_back(routed_shipment, anonymous_client):
    manual = WarehouseFactory()

    response = callback(
        anonymous_client,
        event_body(routed_shipment, "shipped"),
        warehouse_code=manual.code,
        signature=sign(b"{}", "anything", int(time.time())),
    )

    assert_problem(response, 401, "callback_signature_invalid")
    assert_nothing_stored(routed_shipment)


def test_unknown_shipment_is_404(routed_shipment, anonymous_client):
    response = callback(
        anonymous_client,
        event_body(routed_shipment, "shipped", shipment_reference="shp_nope"),
        warehouse_code=routed_shipment.warehouse.code,
    )

    assert_problem(response, 404, "unknown_shipment")
    assert_nothing_stored(routed_shipment)


def test_shipment_of_another_warehouse_is_404(routed_shipment, anonymous_client):
    # Correctly signed by another warehouse, naming a shipment that is not its own.
    other = WarehouseFactory(fulfilment_url="http://127.0.0.1:9/x", fulfilment_secret="other")

    response = callback(
        anonymous_client,
        event_body(routed_shipment, "shipped"),
        warehouse_code=other.code,
        secret="other",
    )

    assert_problem(response, 404, "unknown_shipment")
    assert_nothing_stored(routed_shipment)


def test_signed_body_that_is_not_json_is_400(routed_shipment, anonymous_client):
    response = callback(
        anonymous_client, b'{"event": "shipped",', warehouse_code=routed_shipment.warehouse.code
    )

    assert_problem(response, 400, "malformed_json")
    assert_nothing_stored(routed_shipment)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event": "lost", "shipment_reference": "x"}, "event"),
        ({"event": "shipped"}, "shipment_reference"),
        ({"event": "shipped", "shipment_reference": "x" * 129}, "shipment_reference"),
        ({"shipment_reference": "x"}, "event"),
    ],
)
def test_signed_callback_with_invalid_fields_is_400(routed_shipment, anonymous_client, body, field):
    if body.get("shipment_reference") == "x":
        body = {**body, "shipment_reference": routed_shipment.reference}

    response = callback(anonymous_client, body, warehouse_code=routed_shipment.warehouse.code)

    problem = assert_problem(response, 400, "validation_error")
    assert field in {error["field"] for error in problem["errors"]}
    assert_nothing_stored(routed_shipment)


# The fake warehouse's own callbacks, end to end.


@pytest.mark.django_db(transaction=True)
def test_fake_warehouse_callbacks_walk_a_confirmed_order_to_delivered(
    live_server, fake_warehouse, smtp_backend, settings
):
    settings.FULFILMENT_CALLBACK_BASE_URL = live_server.url
    fake_warehouse.configure(auto_callbacks=True, ship_after=0.05, deliver_after=0.05)
    warehouse = WarehouseFactory(
        fulfilment_url=fake_warehouse.requests_url, fulfilment_secret=WAREHOUSE_SECRET
    )
    product = ProductFactory(price=1999)
    stock_receive(product, warehouse, 5)
    order = order_place(
        customer=UserFactory(),
        email="ada@example.com",
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(sku=product.sku, quantity=1)],
        actor=Actor.system(),
    )

    # Committed: the outbox sends the confirmation email and routes the order.
    order_transition_by_name(order_id=order.pk, transition="confirm", actor=Actor.system())

    # The fake records "delivered" only once oms answered the callback (after commit).
    wait_until(
        lambda: (
            Order.objects.get(pk=order.pk).status == OrderStatus.DELIVERED
            and [s["state"] for s in fake_warehouse.shipments()] == ["delivered"]
        ),
        timeout=10,
        what="the order to be delivered",
    )
    (shipment,) = fake_warehouse.shipments()
    assert shipment["state"] == "delivered"
    assert [c["status"] for c in fake_warehouse.callbacks()] == [200, 200]
    assert Shipment.objects.get(order=order).tracking_number == shipment["tracking_number"]
    # The delivered email goes out right after the delivery commits.
    wait_until(lambda: len(smtp_backend.messages) == 3, timeout=10, what="three emails")
    subjects = sorted(message.header("Subject") for message in smtp_backend.messages)
    assert subjects == [
        f"Your order {order.number} has shipped",
        f"Your order {order.number} is confirmed",
        f"Your order {order.number} was delivered",
    ]
    assert shipment["tracking_number"] in next(
        m.text for m in smtp_backend.messages if "shipped" in m.header("Subject")
    )
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"done"}
