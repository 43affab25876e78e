"""Returns (RMA) over HTTP on PostgreSQL, refunded through the fake Stripe server."""

import json
import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from core import signing
from core.signing import SIGNATURE_HEADER
from inventory.models import StockItem, StockMovement
from orders.models import Order, OrderLine, Return, ReturnStatusChange
from payments.models import Payment
from tests.conftest import new_idempotency_key, run_concurrently, token_client
from tests.payments.conftest import (
    GOOD_CARD,
    PRICE,
    REFUND_PATH,
    assert_provider_consistent,
    order_action,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

QUANTITY = 3
WAREHOUSE_SECRET = "returns-warehouse-secret-0123456789"


@pytest.fixture
def shipped_order_id(provider, checkout, customer_client, staff_client) -> str:
    """A captured, shipped order of QUANTITY units of the product (from warehouse main)."""
    response = checkout(customer_client, GOOD_CARD, quantity=QUANTITY)
    assert response.status_code == 201, response.json()
    order_id: str = response.json()["id"]
    shipped = order_action(staff_client, order_id, "ship")
    assert shipped.status_code == 200, shipped.json()
    assert shipped.json()["payment"]["amount_captured"] == PRICE * QUANTITY
    return order_id


def open_return(client: APIClient, order_id: str, quantity: int, sku: str, **kwargs: Any) -> Any:
    return client.post(
        f"/api/v1/orders/{order_id}/returns/",
        {"lines": [{"sku": sku, "quantity": quantity}], "reason": "does not fit"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=kwargs.get("key") or new_idempotency_key(),
    )


def return_action(
    client: APIClient, order_id: str, return_id: str, action: str, data: Any = None
) -> Any:
    return client.post(
        f"/api/v1/orders/{order_id}/returns/{return_id}/{action}/",
        data or {},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )


def on_hand(product: Any) -> int:
    return StockItem.objects.get(product=product, warehouse__code="main").on_hand


def return_movements(product: Any) -> list[int]:
    return list(
        StockMovement.objects.filter(
            stock_item__product=product, kind=StockMovement.Kind.RETURN
        ).values_list("on_hand_delta", flat=True)
    )


def return_through(
    customer_client: APIClient,
    staff_client: APIClient,
    order_id: str,
    sku: str,
    quantity: int,
    disposition: str = "restock",
) -> dict[str, Any]:
    """Open (customer), authorize, receive and refund (staff) a return; its last body."""
    opened = open_return(customer_client, order_id, quantity, sku)
    assert opened.status_code == 201, opened.json()
    return_id = opened.json()["id"]
    assert opened.json()["status"] == "requested"
    authorized = return_action(staff_client, order_id, return_id, "authorize")
    assert authorized.json()["status"] == "authorized", authorized.json()
    received = return_action(
        staff_client,
        order_id,
        return_id,
        "receive",
        {"lines": [{"sku": sku, "disposition": disposition}]},
    )
    assert received.json()["status"] == "received", received.json()
    refunded = return_action(staff_client, order_id, return_id, "refund")
    assert refunded.status_code == 200, refunded.json()
    body: dict[str, Any] = refunded.json()
    return body


@pytest.mark.django_db
def test_partial_return_then_the_rest_refunds_exactly_the_capture_and_restocks(
    shipped_order_id, customer_client, staff_client, product, provider, fake_stripe
):
    # given a shipped order of 3 units
    stock_before = on_hand(product)

    # when the customer returns 1 unit, then the other 2
    first = return_through(customer_client, staff_client, shipped_order_id, product.sku, 1)
    after_first = Order.objects.get(pk=shipped_order_id)
    second = return_through(customer_client, staff_client, shipped_order_id, product.sku, 2)

    # then each return refunded its units (shipping 0: nothing more), the order went
    # partially_returned, then returned, and the units are back on the shelf
    assert (first["status"], first["refund_amount"]) == ("refunded", PRICE)
    assert after_first.status == "partially_returned"
    assert (second["status"], second["refund_amount"]) == ("refunded", 2 * PRICE)
    order = Order.objects.get(pk=shipped_order_id)
    assert order.status == "returned"
    payment = Payment.objects.get(order=order)
    assert payment.amount_refunded == payment.amount_captured == PRICE * QUANTITY
    assert len(provider.sent(REFUND_PATH)) == 2
    totals = assert_provider_consistent(fake_stripe, shipped_order_id)
    assert totals["refunded"] == PRICE * QUANTITY
    assert on_hand(product) == stock_before + QUANTITY
    assert return_movements(product) == [1, 2]
    # audit rows and events for every step of both returns
    transitions = list(
        ReturnStatusChange.objects.filter(return_request__order=order)
        .order_by("created_at", "id")
        .values_list("transition", flat=True)
    )
    assert transitions == ["open", "authorize", "receive", "refund"] * 2
    event_types = list(order.events.order_by("sequence").values_list("type", flat=True))
    assert event_types.count("return.refunded") == 2
    assert "order.partially_returned" in event_types
    assert event_types[-1] == "order.returned"
    # a refunded return is not refunded again, and nothing is left to return
    again = return_action(staff_client, shipped_order_id, first["id"], "refund")
    assert again.status_code == 200
    assert len(provider.sent(REFUND_PATH)) == 2
    refused = open_return(customer_client, shipped_order_id, 1, product.sku)
    assert refused.status_code == 409
    assert refused.json()["code"] == "order_not_returnable"


@pytest.mark.django_db
def test_a_return_beyond_what_shipped_is_refused_and_changes_nothing(
    shipped_order_id, customer_client, staff_client, product
):
    # given 2 of the 3 units are in an open return
    assert open_return(customer_client, shipped_order_id, 2, product.sku).status_code == 201

    # when 2 more are asked for
    response = open_return(customer_client, shipped_order_id, 2, product.sku)

    # then
    assert response.status_code == 409, response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "return_exceeds_shipped"
    assert response.json()["returnable"] == 1
    assert Return.objects.filter(order_id=shipped_order_id).count() == 1
    assert OrderLine.objects.get(order_id=shipped_order_id).returned_quantity == 2


@pytest.mark.django_db
def test_rejected_and_cancelled_returns_give_their_units_back(
    shipped_order_id, customer_client, staff_client, product
):
    # given two open returns of all units between them... one rejected, one cancelled
    first = open_return(customer_client, shipped_order_id, 2, product.sku).json()
    second = open_return(customer_client, shipped_order_id, 1, product.sku).json()

    rejected = return_action(staff_client, shipped_order_id, first["id"], "reject")
    cancelled = return_action(customer_client, shipped_order_id, second["id"], "cancel")

    # then every unit may be returned again; a closed return takes no more transitions
    assert (rejected.json()["status"], cancelled.json()["status"]) == ("rejected", "cancelled")
    assert OrderLine.objects.get(order_id=shipped_order_id).returned_quantity == 0
    assert open_return(customer_client, shipped_order_id, 3, product.sku).status_code == 201
    late = return_action(staff_client, shipped_order_id, first["id"], "authorize")
    assert late.status_code == 409
    assert late.json()["code"] == "invalid_return_transition"
    # the customer may not authorize their own return
    assert (
        return_action(customer_client, shipped_order_id, second["id"], "authorize").status_code
        == 403
    )


@pytest.mark.django_db
def test_an_unshipped_order_takes_no_return(provider, checkout, customer_client, product):
    confirmed = checkout(customer_client, GOOD_CARD).json()

    response = open_return(customer_client, confirmed["id"], 1, product.sku)

    assert response.status_code == 409
    assert response.json()["code"] == "order_not_returnable"


@pytest.mark.django_db
def test_disposed_units_are_recorded_and_leave_the_stock_alone(
    shipped_order_id, customer_client, staff_client, product
):
    stock_before = on_hand(product)

    body = return_through(
        customer_client, staff_client, shipped_order_id, product.sku, 1, disposition="dispose"
    )

    assert body["lines"][0]["disposition"] == "dispose"
    assert on_hand(product) == stock_before
    assert return_movements(product) == []


@pytest.mark.django_db
def test_return_refund_after_a_partial_refund_never_exceeds_the_capture(
    shipped_order_id, customer_client, staff_client, product, provider, fake_stripe
):
    # given support refunded 1.5 units' worth as a goodwill gesture
    goodwill = PRICE + PRICE // 2
    assert (
        order_action(staff_client, shipped_order_id, "refund", {"amount": goodwill}).status_code
        == 200
    )

    # when the customer returns everything
    body = return_through(customer_client, staff_client, shipped_order_id, product.sku, QUANTITY)

    # then the return refunds only what is left of the capture
    assert body["refund_amount"] == PRICE * QUANTITY - goodwill
    payment = Payment.objects.get(order_id=shipped_order_id)
    assert payment.amount_refunded == payment.amount_captured == PRICE * QUANTITY
    totals = assert_provider_consistent(fake_stripe, shipped_order_id)
    assert totals["refunded"] == PRICE * QUANTITY
    assert Order.objects.get(pk=shipped_order_id).status == "returned"


@pytest.mark.django_db
def test_an_order_refunded_in_full_takes_no_return(
    shipped_order_id, customer_client, staff_client, product, provider
):
    # given the order was refunded in full
    assert order_action(staff_client, shipped_order_id, "refund").status_code == 200

    # when a return is opened
    refused = open_return(customer_client, shipped_order_id, 1, product.sku)

    # then it is refused and nothing more is refunded
    assert refused.status_code == 409
    assert refused.json()["code"] == "order_not_returnable"
    assert len(provider.sent(REFUND_PATH)) == 1


@pytest.mark.django_db
def test_the_warehouse_reports_a_return_received_on_its_signed_callback(
    shipped_order_id,
    customer_client,
    staff_client,
    product,
    provider,
    fake_stripe,
    anonymous_client,
):
    # given an authorized return, and the warehouse "main" able to sign callbacks
    opened = open_return(customer_client, shipped_order_id, 2, product.sku).json()
    return_action(staff_client, shipped_order_id, opened["id"], "authorize")
    from inventory.models import Warehouse

    Warehouse.objects.filter(code="main").update(fulfilment_secret=WAREHOUSE_SECRET)
    stock_before = on_hand(product)
    body = json.dumps(
        {
            "event": "return_received",
            "return_id": opened["id"],
            "lines": [{"sku": product.sku, "disposition": "restock"}],
        }
    ).encode()

    def post(signature: str) -> Any:
        return anonymous_client.post(
            "/api/v1/fulfilment/callbacks/",
            body,
            content_type="application/json",
            HTTP_X_WAREHOUSE_CODE="main",
            **{f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}": signature},
        )

    # when a forged report arrives, then the real one twice
    forged = post(signing.sign(body, "not-the-secret-0123456789abcdef", int(time.time())))
    first = post(signing.sign(body, WAREHOUSE_SECRET, int(time.time())))
    repeated = post(signing.sign(body, WAREHOUSE_SECRET, int(time.time())))

    # then only the signed report counts, once
    assert forged.status_code == 401
    assert first.status_code == 200, first.json()
    assert first.json()["status"] == "received"
    assert first.json()["warehouse"] == "main"
    assert repeated.status_code == 200
    assert on_hand(product) == stock_before + 2
    assert return_movements(product) == [2]
    # and the refund follows (the worker's job; run here through the endpoint)
    refunded = return_action(staff_client, shipped_order_id, opened["id"], "refund")
    assert refunded.json()["refund_amount"] == 2 * PRICE
    assert Order.objects.get(pk=shipped_order_id).status == "partially_returned"


@pytest.mark.django_db(transaction=True)
def test_concurrent_returns_on_the_same_line_never_exceed_what_shipped(
    shipped_order_id, customer, product
):
    # given 3 shipped units and 6 requests for 1 unit each, at the same moment
    clients = [token_client(customer) for _ in range(6)]

    responses = run_concurrently(
        [lambda c=client: open_return(c, shipped_order_id, 1, product.sku) for client in clients],
        timeout=60,
    )

    # then exactly 3 are opened, the rest refused with a stable code
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * QUANTITY + [409] * 3, [r.json() for r in responses]
    refused = [r.json()["code"] for r in responses if r.status_code == 409]
    assert set(refused) == {"return_exceeds_shipped"}
    assert Return.objects.filter(order_id=shipped_order_id).count() == QUANTITY
    line = OrderLine.objects.get(order_id=shipped_order_id)
    assert line.returned_quantity == QUANTITY == line.quantity


@pytest.mark.django_db
def test_the_database_refuses_a_returned_quantity_beyond_the_line(shipped_order_id):
    from django.db import IntegrityError, transaction
    from django.db.models import F

    with pytest.raises(IntegrityError), transaction.atomic():
        OrderLine.objects.filter(order_id=shipped_order_id).update(
            returned_quantity=F("quantity") + 1
        )


@pytest.mark.django_db
def test_other_customers_and_their_returns_are_not_found(
    shipped_order_id, customer_client, other_customer_client, product
):
    opened = open_return(customer_client, shipped_order_id, 1, product.sku).json()

    assert open_return(other_customer_client, shipped_order_id, 1, product.sku).status_code == 404
    detail = other_customer_client.get(f"/api/v1/orders/{shipped_order_id}/returns/{opened['id']}/")
    assert detail.status_code == 404
    listed = customer_client.get(f"/api/v1/orders/{shipped_order_id}/returns/")
    assert [r["id"] for r in listed.json()] == [opened["id"]]


@pytest.mark.django_db
def test_a_return_within_the_window_is_authorized_at_once(
    shipped_order_id, customer_client, product, settings
):
    settings.RETURN_AUTO_AUTHORIZE_DAYS = 30

    opened = open_return(customer_client, shipped_order_id, 1, product.sku)

    assert opened.status_code == 201
    assert opened.json()["status"] == "authorized"
    from core.models import OutboxMessage

    assert OutboxMessage.objects.filter(topic="return.authorized").count() == 1


@pytest.mark.django_db
def test_a_return_refund_whose_answer_was_lost_is_resent_with_the_same_key_and_refunds_once(
    shipped_order_id, customer_client, staff_client, product, provider, fake_stripe
):
    # given a received return, and a provider whose answer to the next refund is lost
    opened = open_return(customer_client, shipped_order_id, 1, product.sku).json()
    return_action(staff_client, shipped_order_id, opened["id"], "authorize")
    return_action(staff_client, shipped_order_id, opened["id"], "receive")
    provider.set_fault("drop_response", times=1, path=REFUND_PATH)

    # when the refund is asked for, fails, and is asked for again (another key)
    failed = return_action(staff_client, shipped_order_id, opened["id"], "refund")
    assert failed.status_code == 503, failed.json()
    assert Return.objects.get(pk=opened["id"]).status == "received"
    provider.clear()
    provider.wait_idle(10)
    retried = return_action(staff_client, shipped_order_id, opened["id"], "refund")

    # then the same operation was resent: one refund at the provider, of the return's amount
    assert retried.status_code == 200, retried.json()
    assert retried.json()["status"] == "refunded"
    keys = {r.idempotency_key for r in provider.requests if r.path == "/v1/refunds"}
    assert len(keys) == 1
    totals = assert_provider_consistent(fake_stripe, shipped_order_id)
    assert totals["refunded"] == PRICE
    assert Payment.objects.get(order_id=shipped_order_id).amount_refunded == PRICE


@pytest.mark.django_db
def test_the_order_admin_lists_the_returns(
    shipped_order_id, customer_client, staff_client, product, client
):
    from django.urls import reverse

    from tests.admin.conftest import staff_group_permissions_grant
    from tests.factories import StaffFactory

    # A transactional test run before may have flushed the groups' permissions.
    staff_group_permissions_grant()
    return_through(customer_client, staff_client, shipped_order_id, product.sku, 1)
    client.force_login(StaffFactory(groups=["support"]))

    page = client.get(reverse("admin:orders_order_change", args=[shipped_order_id]))

    assert page.status_code == 200
    text = page.content.decode()
    assert f"1 x {product.sku} (restock)" in text
    assert "refunded" in text
