"""Capture per shipment, as a real worker meets it: the fake warehouse ships an order in
parts and calls oms back over HTTP, a Celery worker captures each part at the fake Stripe
server (multicapture), and the money adds up to the order total, or to what shipped when
the rest is cancelled, never once more."""

import json
import threading
import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from core.signing import sign
from fulfilment.models import Shipment
from inventory.models import StockItem
from orders.models import Order, OrderEvent
from payments.models import Payment, PaymentOperation
from pricing.models import ShippingRate, TaxRate
from tests.conftest import assert_stock_consistent, new_idempotency_key, token_client
from tests.factories import StaffFactory
from tests.fulfilment.conftest import CALLBACK_URL
from tests.support.fake_warehouse import WAREHOUSE_SECRET
from tests.support.worker import wait_for
from tests.worker.conftest import (
    GOOD_CARD,
    checkout,
    held_at,
    history,
    order_status,
    wait_outbox_settled,
    warehouse_at,
)

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.fake_warehouse",
    "tests.support.fake_stripe",
)
pytestmark = pytest.mark.django_db(transaction=True)

GEAR_PRICE = 1999
COG_PRICE = 500
SHIPPING = 495
TAX_BASIS_POINTS = 2000  # 20%, shipping taxed too


@pytest.fixture
def gb_rates() -> None:
    TaxRate.objects.create(country="GB", basis_points=TAX_BASIS_POINTS, shipping_taxable=True)
    ShippingRate.objects.create(country="GB", method="standard", currency="EUR", amount=SHIPPING)


@pytest.fixture
def world(
    gb_rates, start_worker, payments_at_fake_stripe, callbacks_to_live_server, fake_warehouses
):
    """One warehouse that ships when told to, two products there, and a worker."""
    fake = fake_warehouses(auto_callbacks=False)
    warehouse_at("main", fake)
    return {"fake": fake, "stripe": payments_at_fake_stripe, "start_worker": start_worker}


def paid_routed_order(
    world: dict[str, Any], customer_client, stocked_product, *, card: str = GOOD_CARD
) -> dict[str, Any]:
    """3 gears and 2 cogs, authorized at the fake Stripe, accepted by the warehouse."""
    gear = stocked_product(quantities={"main": 10}, price=GEAR_PRICE, name="Brass gear")
    cog = stocked_product(quantities={"main": 10}, price=COG_PRICE, name="Steel cog")
    worker = world["start_worker"]()
    order = checkout(customer_client, [(gear.sku, 3), (cog.sku, 2)], card=card)
    wait_for(lambda: order_status(order["id"]) == "routed", worker=worker, what="routed")
    shipment = Shipment.objects.get(order_id=order["id"])
    return {"order": order, "gear": gear, "cog": cog, "worker": worker, "shipment": shipment}


def captures(order_id: Any) -> list[tuple[int, str, bool]]:
    return [
        (op.amount, op.status, op.final)
        for op in PaymentOperation.objects.filter(
            payment__order_id=order_id, kind=PaymentOperation.Kind.CAPTURE
        ).order_by("pk")
    ]


def intent_of(world: dict[str, Any], order_id: Any) -> dict[str, Any]:
    (intent,) = world["stripe"].payment_intents(order_id=str(order_id))
    return intent


def part_value(order: Order, units: dict[str, int], *, with_shipping: bool) -> int:
    """Units at their unit price plus floor(line tax x units / quantity)."""
    value = 0
    for line in order.lines.all():
        shipped = units.get(line.sku, 0)
        value += line.unit_price * shipped + line.tax_amount * shipped // line.quantity
    if with_shipping:
        lines_total = sum(line.line_total + line.tax_amount for line in order.lines.all())
        value += order.total_amount - lines_total
    return value


def test_shipping_part_then_the_rest_captures_the_order_total_in_two_captures(
    world, customer_client, stocked_product
):
    placed = paid_routed_order(world, customer_client, stocked_product)
    order = Order.objects.get(pk=placed["order"]["id"])
    gear, shipment, worker = placed["gear"], placed["shipment"], placed["worker"]
    assert order.shipping_amount == SHIPPING
    assert order.tax_amount > 0

    # When the warehouse ships 2 of the 3 gears
    world["fake"].ship_part(shipment.reference, [{"sku": gear.sku, "quantity": 2}])

    # Then the worker captures those 2 gears, their tax share and the shipping, not final
    first = part_value(order, {gear.sku: 2}, with_shipping=True)
    wait_for(lambda: captures(order.pk) == [(first, "succeeded", False)], worker=worker)
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.amount_captured) == ("authorized", first)
    intent = intent_of(world, order.pk)
    assert (intent["status"], intent["amount_received"]) == ("requires_capture", first)
    assert order_status(order.pk) == "partially_shipped"

    # When it ships the rest
    world["fake"].send_event(shipment.reference, "shipped")

    # Then a final capture takes the rest: exactly the order total, in two captures
    wait_for(lambda: order_status(order.pk) == "shipped", worker=worker, what="shipped")
    wait_outbox_settled(worker)
    assert captures(order.pk) == [
        (first, "succeeded", False),
        (order.total_amount - first, "succeeded", True),
    ]
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("captured", order.total_amount)
    intent = intent_of(world, order.pk)
    assert (intent["status"], intent["amount_received"]) == ("succeeded", order.total_amount)
    assert intent["amount_capturable"] == 0
    captured_events = OrderEvent.objects.filter(order=order, type="payment.captured")
    assert [e.data["change"]["capture"]["amount"] for e in captured_events.order_by("pk")] == [
        first,
        order.total_amount - first,
    ]
    assert history(order.pk)[-2:] == [
        ("ship_partially", "partially_shipped"),
        ("ship", "shipped"),
    ]
    assert_stock_consistent()


def test_part_shipped_then_the_rest_cancelled_captures_what_shipped_and_releases_the_rest(
    world, customer_client, stocked_product
):
    placed = paid_routed_order(world, customer_client, stocked_product)
    order = Order.objects.get(pk=placed["order"]["id"])
    gear, cog, shipment, worker = (
        placed["gear"],
        placed["cog"],
        placed["shipment"],
        placed["worker"],
    )
    world["fake"].ship_part(shipment.reference, [{"sku": gear.sku, "quantity": 1}])
    shipped_value = part_value(order, {gear.sku: 1}, with_shipping=True)
    wait_for(lambda: captures(order.pk) == [(shipped_value, "succeeded", False)], worker=worker)

    # When support cancels the rest
    response = token_client(StaffFactory(groups=["support"])).post(
        f"/api/v1/orders/{order.pk}/cancel-rest/",
        {"reason": "the rest is backordered"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )
    assert response.status_code == 200, response.content

    # Then what shipped stays captured, the rest of the authorization is released once
    # (a cancel at the provider), and the stock held for the rest is released
    wait_for(lambda: order_status(order.pk) == "shipped", worker=worker, what="shipped")
    wait_outbox_settled(worker)
    assert captures(order.pk) == [(shipped_value, "succeeded", False), (0, "succeeded", True)]
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.amount_captured) == ("captured", shipped_value)
    intent = intent_of(world, order.pk)
    assert (intent["status"], intent["amount_received"], intent["amount_capturable"]) == (
        "succeeded",
        shipped_value,
        0,
    )
    assert held_at(order.pk) == {}
    gear_stock = StockItem.objects.get(product=gear)
    cog_stock = StockItem.objects.get(product=cog)
    assert (gear_stock.on_hand, gear_stock.reserved) == (9, 0)
    assert (cog_stock.on_hand, cog_stock.reserved) == (10, 0)
    # A refund takes back at most what was captured.
    too_much = token_client(StaffFactory(groups=["support"])).post(
        f"/api/v1/orders/{order.pk}/refund/",
        {"amount": shipped_value + 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )
    assert too_much.status_code == 409, too_much.content
    assert too_much.json()["code"] == "refund_exceeds_captured"
    assert_stock_consistent()


def test_a_card_without_multicapture_is_captured_once_when_the_last_unit_ships(
    world, customer_client, stocked_product
):
    # Given an order paid with a JCB card: Stripe offers no multicapture on JCB
    jcb = world["stripe"].create_card("3566002020360505")
    placed = paid_routed_order(world, customer_client, stocked_product, card=jcb)
    order = Order.objects.get(pk=placed["order"]["id"])
    gear, shipment, worker = placed["gear"], placed["shipment"], placed["worker"]

    # When the warehouse ships 2 of the 3 gears
    world["fake"].ship_part(shipment.reference, [{"sku": gear.sku, "quantity": 2}])

    # Then the provider refuses the part capture, nothing is captured, and the worker
    # does not retry it (no dead letter): the order waits for its last unit
    first = part_value(order, {gear.sku: 2}, with_shipping=True)
    wait_for(lambda: captures(order.pk) == [(first, "failed", False)], worker=worker)
    wait_outbox_settled(worker)
    assert order_status(order.pk) == "partially_shipped"
    assert Payment.objects.get(order=order).amount_captured == 0
    intent = intent_of(world, order.pk)
    assert (intent["status"], intent["amount_received"]) == ("requires_capture", 0)
    assert PaymentOperation.objects.get(
        payment__order=order, kind="capture", status="failed"
    ).error_code == ("payment_intent_invalid_parameter")

    # When it ships the rest
    world["fake"].send_event(shipment.reference, "shipped")

    # Then one final capture takes the whole order total
    wait_for(lambda: order_status(order.pk) == "shipped", worker=worker, what="shipped")
    wait_outbox_settled(worker)
    assert captures(order.pk) == [
        (first, "failed", False),
        (order.total_amount, "succeeded", True),
    ]
    intent = intent_of(world, order.pk)
    assert (intent["status"], intent["amount_received"]) == ("succeeded", order.total_amount)
    assert_stock_consistent()


def report_body(shipment: Shipment, event_id: str, lines: list[dict[str, Any]] | None) -> bytes:
    body: dict[str, Any] = {
        "event": "shipped",
        "event_id": event_id,
        "shipment_reference": shipment.reference,
        "order_number": shipment.order.number,
        "warehouse_code": shipment.warehouse.code,
        "carrier": "DHL",
        "tracking_number": "JJD1",
    }
    if lines is not None:
        body["lines"] = lines
    return json.dumps(body).encode()


def report(shipment: Shipment, body: bytes) -> Any:
    return APIClient().post(
        CALLBACK_URL,
        data=body,
        content_type="application/json",
        HTTP_X_WAREHOUSE_CODE=shipment.warehouse.code,
        HTTP_X_OMS_SIGNATURE=sign(body, WAREHOUSE_SECRET, int(time.time())),
    )


def test_a_repeated_shipment_report_captures_once(world, customer_client, stocked_product):
    placed = paid_routed_order(world, customer_client, stocked_product)
    order = Order.objects.get(pk=placed["order"]["id"])
    shipment = Shipment.objects.select_related("order", "warehouse").get(order=order)
    gear, worker = placed["gear"], placed["worker"]
    part = report_body(shipment, "evt_part_1", [{"sku": gear.sku, "quantity": 2}])

    # When the warehouse sends its part report three times (retries), then the rest twice
    assert [report(shipment, part).status_code for _ in range(3)] == [200, 200, 200]
    rest = report_body(shipment, "evt_rest_1", None)
    assert [report(shipment, rest).status_code for _ in range(2)] == [200, 200]

    # Then each report is captured once, and all of it adds up to the total
    wait_for(lambda: order_status(order.pk) == "shipped", worker=worker, what="shipped")
    wait_outbox_settled(worker)
    first = part_value(order, {gear.sku: 2}, with_shipping=True)
    assert captures(order.pk) == [
        (first, "succeeded", False),
        (order.total_amount - first, "succeeded", True),
    ]
    assert intent_of(world, order.pk)["amount_received"] == order.total_amount
    assert Payment.objects.get(order=order).amount_captured == order.total_amount


def test_concurrent_reports_of_two_shipments_capture_each_once(
    gb_rates,
    start_worker,
    payments_at_fake_stripe,
    callbacks_to_live_server,
    fake_warehouses,
    stocked_product,
    customer_client,
):
    # Given an order split over two warehouses: gears at north, cogs at south
    north, south = fake_warehouses(auto_callbacks=False), fake_warehouses(auto_callbacks=False)
    warehouse_at("north", north)
    warehouse_at("south", south)
    gear = stocked_product(quantities={"north": 5}, price=GEAR_PRICE)
    cog = stocked_product(quantities={"south": 5}, price=COG_PRICE)
    worker = start_worker()
    placed = checkout(customer_client, [(gear.sku, 2), (cog.sku, 3)], card=GOOD_CARD)
    order = Order.objects.get(pk=placed["id"])
    wait_for(
        lambda: Shipment.objects.filter(order=order).count() == 2,
        worker=worker,
        what="two shipments",
    )
    by_code = {s.warehouse.code: s for s in Shipment.objects.filter(order=order)}
    start = threading.Barrier(2)
    answers: dict[str, Any] = {}

    def ship(code: str, fake: Any) -> None:
        start.wait()
        answers[code] = fake.send_event(by_code[code].reference, "shipped")

    # When both warehouses report their shipment shipped at the same moment
    threads = [
        threading.Thread(target=ship, args=("north", north)),
        threading.Thread(target=ship, args=("south", south)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [answers[code]["delivered"] for code in ("north", "south")] == [True, True]

    # Then each shipment is captured once, the later one final, adding up to the total
    wait_for(lambda: order_status(order.pk) == "shipped", worker=worker, what="shipped")
    wait_outbox_settled(worker)
    taken = captures(order.pk)
    assert [(status, final) for _, status, final in taken] == [
        ("succeeded", False),
        ("succeeded", True),
    ]
    assert sum(amount for amount, _, _ in taken) == order.total_amount
    references = PaymentOperation.objects.filter(
        payment__order=order, kind=PaymentOperation.Kind.CAPTURE
    ).values_list("reference", flat=True)
    assert {r.split("-report-")[0] for r in references} == {
        f"shipment-{s.pk}" for s in by_code.values()
    }
    (intent,) = payments_at_fake_stripe.payment_intents(order_id=str(order.pk))
    assert (intent["status"], intent["amount_received"]) == ("succeeded", order.total_amount)
    assert_stock_consistent()
