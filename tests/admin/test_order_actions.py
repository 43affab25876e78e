"""The order page's actions: ship and refund (whole or in part) through the confirmation
page run the API's use cases against the fake Stripe server, once per submitted form."""

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from core.money import money_parse
from flows.warehouse_reports import shipment_report_apply
from fulfilment.models import Shipment
from inventory.models import Reservation
from orders.models import Order, OrderEvent, OrderStatusChange
from orders.states import OrderStatus
from payments.models import Payment, PaymentOperation
from tests.payments.conftest import provider_totals
from tests.support.fake_stripe import FakeStripeServer

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fake_warehouse")

pytestmark = pytest.mark.django_db


def action_url(order: Order, transition: str) -> str:
    return reverse("admin:orders_order_act", args=[order.pk, transition])


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def confirmation(client: Client, order: Order, transition: str) -> dict[str, str]:
    """Open the confirmation page; return the form's hidden fields."""
    page = client.get(action_url(order, transition))
    assert page.status_code == 200
    return {"idempotency_key": page.context["form"]["idempotency_key"].value()}


def submit(client: Client, order: Order, transition: str, form: dict[str, str]) -> Any:
    return client.post(action_url(order, transition), form, follow=True)


def test_ship_then_refund_part_then_the_rest(
    admin_client: Client,
    admin_user: Any,
    paid_order: Callable[..., Order],
    fake_stripe: FakeStripeServer,
) -> None:
    # Given an order of 39.98 EUR routed to the fake warehouse
    order = paid_order(routed=True)

    # When staff ship it, then refund 12.34, then the rest, each with a reason
    shipped = submit(
        admin_client,
        order,
        "ship",
        {**confirmation(admin_client, order, "ship"), "reason": "picked by hand"},
    )
    refund_page = admin_client.get(action_url(order, "refund"))
    partly = submit(
        admin_client,
        order,
        "refund",
        {**confirmation(admin_client, order, "refund"), "amount": "12.34", "reason": "dented"},
    )
    order.refresh_from_db()
    status_after_part = order.status
    rest = submit(
        admin_client,
        order,
        "refund",
        {**confirmation(admin_client, order, "refund"), "amount": "", "reason": "returned"},
    )

    # Then the provider captured 39.98 once and refunded 12.34 + 27.64
    order.refresh_from_db()
    assert messages_of(shipped) == [f"{order.number}: ship, now shipped."]
    assert "39.98 EUR" in refund_page.content.decode()  # left to refund
    assert messages_of(partly) == [f"{order.number}: refunded 12.34 EUR, now shipped."]
    assert status_after_part == OrderStatus.SHIPPED
    assert messages_of(rest) == [f"{order.number}: refunded all that was left, now refunded."]
    assert order.status == OrderStatus.REFUNDED
    totals = provider_totals(fake_stripe, order.pk)
    assert (totals["captures"], totals["captured"], totals["refunded"]) == (1, 3998, 3998)
    refunds = PaymentOperation.objects.filter(payment__order=order, kind="refund")
    assert sorted(refunds.values_list("amount", flat=True)) == [1234, 2764]
    # And the history reads what happened, who did it and why, oldest first
    ship = OrderStatusChange.objects.get(order=order, transition="ship")
    assert (ship.actor, ship.reason) == (admin_user, "picked by hand")
    history = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))
    text = " ".join(history.content.decode().split())
    assert text.index("routed → shipped (ship)") < text.index("Refunded 12.34 EUR")
    assert text.index("Refunded 12.34 EUR") < text.index("Refunded all that was left")
    assert "picked by hand" in text
    assert "dented" in text
    assert "shipped → refunded (refund)" in text


def test_submitting_the_same_confirmation_twice_refunds_once(
    admin_client: Client, paid_order: Callable[..., Order], fake_stripe: FakeStripeServer
) -> None:
    # Given a shipped order and one refund form, filled in
    order = paid_order(routed=True)
    submit(
        admin_client, order, "ship", {**confirmation(admin_client, order, "ship"), "reason": "r"}
    )
    form = {**confirmation(admin_client, order, "refund"), "amount": "30", "reason": "twice"}

    # When it is submitted twice (a double click, a resent POST)
    first = submit(admin_client, order, "refund", form)
    second = submit(admin_client, order, "refund", form)

    # Then one refund of 30.00 reached the provider and the second says so (though 30 is
    # more than is left after the first)
    assert messages_of(first) == [f"{order.number}: refunded 30.00 EUR, now shipped."]
    assert messages_of(second) == [
        f"{order.number}: this confirmation was already submitted; nothing was done again."
    ]
    assert provider_totals(fake_stripe, order.pk)["refunded"] == 3000
    assert PaymentOperation.objects.filter(payment__order=order, kind="refund").count() == 1


def test_submitting_a_transition_twice_takes_it_once(
    admin_client: Client, paid_order: Callable[..., Order]
) -> None:
    order = paid_order()
    form = {**confirmation(admin_client, order, "cancel"), "reason": "customer called"}

    submit(admin_client, order, "cancel", form)
    second = submit(admin_client, order, "cancel", form)

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert OrderStatusChange.objects.filter(order=order, transition="cancel").count() == 1
    assert "already submitted" in messages_of(second)[0]


def partly_shipped(order: Order, units: int) -> Shipment:
    """The warehouse reports `units` of the order's one line shipped (its signed callback's
    use case, in this process)."""
    shipment = Shipment.objects.select_related("warehouse").get(order=order)
    shipment_report_apply(
        warehouse=shipment.warehouse,
        event="shipped",
        reference=shipment.reference,
        carrier="DHL",
        tracking_number="JJD1",
        event_id="evt_part",
        lines={order.lines.get().sku: units},
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.PARTIALLY_SHIPPED
    return shipment


def test_cancel_rest_captures_what_shipped_and_releases_the_rest_once(
    admin_client: Client,
    paid_order: Callable[..., Order],
    fake_stripe: FakeStripeServer,
    fake_warehouse: Any,
    stocked: Any,
) -> None:
    # Given an order of 3 gears, 1 of which left the warehouse
    order = paid_order(3, routed=True)
    partly_shipped(order, 1)
    page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert "cancel_rest" in [name for name, _, _ in page.context["order_actions"]]
    confirm_page = admin_client.get(action_url(order, "cancel_rest"))
    assert "rest of the authorization is released" in confirm_page.context["what_happens"]
    form = {**confirmation(admin_client, order, "cancel_rest"), "reason": "backordered"}

    # When support confirms "cancel rest", twice (a double click)
    first = submit(admin_client, order, "cancel_rest", form)
    second = submit(admin_client, order, "cancel_rest", form)

    # Then the warehouse withdrew the rest once, the gear that left is captured, the
    # rest of the authorization released, the stock held for the rest released
    assert messages_of(first) == [f"{order.number}: cancelled the unshipped rest, now shipped."]
    assert "already submitted" in messages_of(second)[0]
    assert [w["result"] for w in fake_warehouse.withdrawals()] == ["withdrawn"]
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.amount_captured) == ("captured", stocked.price)
    (intent,) = fake_stripe.payment_intents(order_id=str(order.pk))
    assert (intent["status"], intent["amount_received"]) == ("succeeded", stocked.price)
    assert list(
        PaymentOperation.objects.filter(payment=payment, kind="capture").values_list(
            "amount", "final"
        )
    ) == [(stocked.price, True)]
    assert Reservation.objects.filter(order_line__order=order, status="held").count() == 0
    assert OrderEvent.objects.filter(order=order, type="order.rest_cancelled").count() == 1
    assert admin_client.get(action_url(order, "cancel_rest"), follow=True).redirect_chain


@pytest.mark.parametrize(("groups", "allowed"), [(("support",), True), (("warehouse",), False)])
def test_cancel_rest_is_offered_to_whom_the_api_admits(
    client: Client,
    staff_in: Callable[..., Any],
    paid_order: Callable[..., Order],
    groups: tuple[str, ...],
    allowed: bool,
) -> None:
    order = paid_order(3, routed=True)
    partly_shipped(order, 2)
    client.force_login(staff_in(*groups))

    page = client.get(reverse("admin:orders_order_change", args=[order.pk]))
    confirm_page = client.get(action_url(order, "cancel_rest"))

    offered = [name for name, _, _ in page.context["order_actions"]]
    assert ("cancel_rest" in offered) == allowed
    assert confirm_page.status_code == (200 if allowed else 403)
    order.refresh_from_db()
    assert order.status == OrderStatus.PARTIALLY_SHIPPED


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("39.99", "At most 39.98 EUR can be refunded."),
        ("1.234", "EUR has 2 decimal places at most."),
        ("0", "Enter an amount above zero."),
        ("-5", "Enter an amount above zero."),
        ("ten", "Enter an amount such as 12.34."),
    ],
)
def test_refund_form_rejects_amounts_it_cannot_refund(
    admin_client: Client, paid_order: Callable[..., Order], amount: str, error: str
) -> None:
    order = paid_order(routed=True)
    submit(
        admin_client, order, "ship", {**confirmation(admin_client, order, "ship"), "reason": "r"}
    )

    response = admin_client.post(
        action_url(order, "refund"),
        {**confirmation(admin_client, order, "refund"), "amount": amount, "reason": "r"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["amount"] == [error]
    assert Payment.objects.get(order=order).amount_refunded == 0
    assert not PaymentOperation.objects.filter(payment__order=order, kind="refund").exists()


def test_the_reason_is_required(admin_client: Client, paid_order: Callable[..., Order]) -> None:
    order = paid_order()

    response = admin_client.post(
        action_url(order, "cancel"), {**confirmation(admin_client, order, "cancel"), "reason": ""}
    )

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.34", "EUR", 1234),
        ("12.3", "EUR", 1230),
        ("12", "EUR", 1200),
        ("0.01", "EUR", 1),
        ("1,234.50", "USD", 123450),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
    ],
)
def test_money_parse_converts_major_units_exactly(text: str, currency: str, minor: int) -> None:
    assert money_parse(text, currency) == minor


@pytest.mark.parametrize(("text", "currency"), [("0.001", "EUR"), ("1.5", "JPY"), ("NaN", "EUR")])
def test_money_parse_rejects_what_the_currency_cannot_hold(text: str, currency: str) -> None:
    with pytest.raises(ValueError, match="decimal places|such as"):
        money_parse(text, currency)
