"""Every change of an order leaves one event in its log, written with the change: an
order's events are numbered 1, 2, 3 with no gap, and read back by its owner."""

import pytest

from core.models import OutboxMessage
from orders.models import OrderEvent
from tests.payments.conftest import DECLINING_CARD, GOOD_CARD, PRICE, order_action

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")


@pytest.mark.django_db
def test_an_orders_life_is_one_numbered_event_per_change(
    provider, checkout, customer_client, other_customer_client, staff_client
):
    # Given a paid order that staff ship and refund in two parts
    order_id = checkout(customer_client, GOOD_CARD).json()["id"]
    assert order_action(staff_client, order_id, "ship").status_code == 200
    assert order_action(staff_client, order_id, "refund", {"amount": 300}).status_code == 200
    assert order_action(staff_client, order_id, "refund").status_code == 200

    # When its owner reads its events
    response = customer_client.get(f"/api/v1/orders/{order_id}/events/")

    # Then each change is there once, in order, numbered with no gap
    assert response.status_code == 200, response.json()
    events = response.json()["events"]
    assert [(e["sequence"], e["type"]) for e in events] == [
        (1, "order.created"),
        (2, "payment.authorized"),
        (3, "order.confirmed"),
        (4, "payment.captured"),
        (5, "order.routed"),
        (6, "order.shipped"),
        (7, "payment.refunded"),
        (8, "payment.refunded"),
        (9, "order.refunded"),
    ]
    assert [e["data"]["change"]["amount"] for e in events if e["type"] == "payment.refunded"] == [
        300,
        PRICE - 300,
    ]
    assert events[-1]["data"]["order"]["status"] == "refunded"
    order = customer_client.get(f"/api/v1/orders/{order_id}/").json()
    assert order["payment"]["status"] == "refunded"
    assert order["reservation_expires_at"] is None
    # Each refund asks for its own notice to the customer.
    notices = OutboxMessage.objects.filter(
        topic="payment.refunded", handler="notifications.refund_issued_email"
    ).order_by("pk")
    assert [m.payload["amount"] for m in notices] == [300, PRICE - 300]
    assert {e["order_id"] for e in events} == {order_id}
    assert {e["api_version"] for e in events} == {"2026-11-29"}
    # The same log, read from a later sequence, and never by another customer.
    later = customer_client.get(f"/api/v1/orders/{order_id}/events/?after_sequence=7").json()
    assert [e["sequence"] for e in later["events"]] == [8, 9]
    assert other_customer_client.get(f"/api/v1/orders/{order_id}/events/").status_code == 404


@pytest.mark.django_db
def test_a_declined_payment_and_a_cancel_are_events_too(provider, checkout, customer_client):
    order_id = checkout(customer_client, card=None).json()["id"]
    declined = order_action(customer_client, order_id, "pay", {"payment_method": DECLINING_CARD})
    assert declined.status_code == 402
    assert order_action(customer_client, order_id, "cancel").status_code == 200

    types = list(
        OrderEvent.objects.filter(order_id=order_id)
        .order_by("sequence")
        .values_list("type", flat=True)
    )
    assert types == ["order.created", "order.payment_failed", "order.cancelled"]
