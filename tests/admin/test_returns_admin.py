"""Returns and refunds by line from the order page: each step through the returns use
cases (flows.returns) and flows.refund against the fake Stripe server, once per
submitted form, with the staff user as the actor."""

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import F
from django.test import Client
from django.urls import reverse

from core.actors import Actor
from flows.admin import order_lines_refund_amount
from flows.pay import order_pay
from flows.place import OrderLineRequest, order_place
from flows.routing import order_route
from flows.transitions import order_transition_by_name
from inventory.models import Product, StockItem, Warehouse
from orders.models import Order, Return, ReturnStatusChange
from orders.states import OrderStatus
from payments.models import Payment, PaymentOperation
from tests.admin.conftest import ADDRESS, GOOD_CARD
from tests.conftest import stock_receive
from tests.factories import ProductFactory, UserFactory
from tests.payments.conftest import provider_totals
from tests.support.fake_stripe import FakeStripeServer

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fake_warehouse")

pytestmark = pytest.mark.django_db

TAX = 900  # on a subtotal of 44.98: not a multiple of any line's share


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def products(warehouse: Warehouse) -> tuple[Product, Product]:
    gear = ProductFactory(price=1999, currency="EUR", name="Brass gear")
    nut = ProductFactory(price=500, currency="EUR", name="Wing nut")
    stock_receive(gear, warehouse, 10)
    stock_receive(nut, warehouse, 10)
    return gear, nut


@pytest.fixture
def shipped_order(stripe_provider: FakeStripeServer, products: tuple[Product, Product]) -> Order:
    """2 gears at 19.99 and 1 nut at 5.00, 9.00 tax: 53.98 EUR captured and shipped from
    the fake warehouse."""
    gear, nut = products
    customer = UserFactory()
    order = order_place(
        customer=customer,
        email=customer.email,
        shipping_address=ADDRESS,
        lines=[
            OrderLineRequest(sku=gear.sku, quantity=2),
            OrderLineRequest(sku=nut.sku, quantity=1),
        ],
        actor=Actor(user=customer),
    )
    Order.objects.filter(pk=order.pk).update(
        tax_amount=TAX, total_amount=F("subtotal_amount") + TAX
    )
    order_pay(order_id=order.pk, payment_method=GOOD_CARD, actor=Actor(user=customer))
    order_route(order_id=order.pk)
    order_transition_by_name(order_id=order.pk, transition="ship", actor=Actor.system())
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED
    assert Payment.objects.get(order=order).amount_captured == 5398
    return order


def change_page(client: Client, order: Order) -> Any:
    page = client.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert page.status_code == 200
    return page


def form_key(client: Client, url: str) -> dict[str, str]:
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    return {"idempotency_key": page.context["form"]["idempotency_key"].value()}


def open_url(order: Order) -> str:
    return reverse("admin:orders_order_return_open", args=[order.pk])


def act_url(order: Order, return_request: Return, action: str) -> str:
    return reverse("admin:orders_order_return_act", args=[order.pk, return_request.pk, action])


def refund_lines_url(order: Order) -> str:
    return reverse("admin:orders_order_refund_lines", args=[order.pk])


def line_field(order: Order, sku: str) -> str:
    return f"line_{order.lines.get(sku=sku).pk}"


def return_line_field(return_request: Return, sku: str, prefix: str = "disposition") -> str:
    return f"{prefix}_{return_request.lines.get(order_line__sku=sku).pk}"


def on_hand(product: Product) -> int:
    return StockItem.objects.get(product=product).on_hand


def test_open_authorize_receive_and_refund_a_return_from_the_order_page(
    client: Client,
    staff_in: Callable[..., User],
    shipped_order: Order,
    products: tuple[Product, Product],
    fake_stripe: FakeStripeServer,
) -> None:
    # Given a shipped order and a support agent on its page
    gear, nut = products
    order = shipped_order
    agent = staff_in("support")
    client.force_login(agent)
    gears_before, nuts_before = on_hand(gear), on_hand(nut)
    offered = [name for name, _, _ in change_page(client, order).context["order_forms"]]

    # When they open a return of 1 gear and the nut, authorize it, receive it (the gear
    # restocked, the nut disposed of) and refund it, each with its confirmation page
    opened = client.post(
        open_url(order),
        {
            **form_key(client, open_url(order)),
            line_field(order, gear.sku): "1",
            line_field(order, nut.sku): "1",
            "reason": "customer sent back",
        },
        follow=True,
    )
    return_request = Return.objects.get(order=order)
    page = change_page(client, order)
    actions_when_requested = [name for name, _, _ in page.context["return_actions"][0][1]]
    authorized = client.post(
        act_url(order, return_request, "authorize"),
        {**form_key(client, act_url(order, return_request, "authorize")), "reason": "ok"},
        follow=True,
    )
    received = client.post(
        act_url(order, return_request, "receive"),
        {
            **form_key(client, act_url(order, return_request, "receive")),
            return_line_field(return_request, gear.sku): "restock",
            return_line_field(return_request, nut.sku): "dispose",
            "warehouse": "",
        },
        follow=True,
    )
    refund_page = client.get(act_url(order, return_request, "refund"))
    refunded = client.post(
        act_url(order, return_request, "refund"),
        {**form_key(client, act_url(order, return_request, "refund")), "reason": "as agreed"},
        follow=True,
    )

    # Then the return went requested -> authorized -> received -> refunded
    short = str(return_request.pk)[:8]
    assert offered == ["return_open", "refund_lines"]
    assert messages_of(opened) == [f"{order.number}: opened return {short}, now requested."]
    assert actions_when_requested == ["authorize", "reject", "cancel"]
    assert messages_of(authorized) == [
        f"{order.number}: return {short}: authorize, now authorized."
    ]
    assert messages_of(received) == [f"{order.number}: return {short}: receive, now received."]
    # 19.99 + 5.00 and their share of the tax: floor(9.00 x 24.99 / 44.98) = 5.00
    assert "29.99 EUR" in refund_page.content.decode()
    assert messages_of(refunded) == [
        f"{order.number}: return {short}: refunded 29.99 EUR, now refunded."
    ]
    # And the money is exact at the provider and here; the order is partially returned
    return_request.refresh_from_db()
    order.refresh_from_db()
    assert return_request.refund_amount == 2999
    assert provider_totals(fake_stripe, order.pk)["refunded"] == 2999
    assert Payment.objects.get(order=order).amount_refunded == 2999
    assert order.status == OrderStatus.PARTIALLY_RETURNED
    # And the gear is back on the shelf, the nut is not
    assert (on_hand(gear), on_hand(nut)) == (gears_before + 1, nuts_before)
    assert dict(return_request.lines.values_list("order_line__sku", "disposition")) == {
        gear.sku: "restock",
        nut.sku: "dispose",
    }
    # And every step is audited with the agent as the actor, with their reasons
    changes = list(
        ReturnStatusChange.objects.filter(return_request=return_request)
        .order_by("created_at", "pk")
        .values_list("transition", "actor", "reason")
    )
    assert changes == [
        ("open", agent.pk, "customer sent back"),
        ("authorize", agent.pk, "ok"),
        ("receive", agent.pk, ""),
        ("refund", agent.pk, ""),
    ]
    history = " ".join(change_page(client, order).content.decode().split())
    assert f"Refunded return {short} (29.99 EUR)" in history
    assert f"return {short}: authorized → received (receive)" in history
    assert "as agreed" in history


def test_submitting_the_same_return_forms_twice_acts_once(
    client: Client,
    staff_in: Callable[..., User],
    shipped_order: Order,
    products: tuple[Product, Product],
    fake_stripe: FakeStripeServer,
) -> None:
    gear, _ = products
    order = shipped_order
    client.force_login(staff_in("support"))
    open_form = {
        **form_key(client, open_url(order)),
        line_field(order, gear.sku): "2",
        "reason": "twice",
    }

    first_open = client.post(open_url(order), open_form, follow=True)
    second_open = client.post(open_url(order), open_form, follow=True)
    return_request = Return.objects.get(order=order)
    restock = {return_line_field(return_request, gear.sku): "restock", "warehouse": ""}
    for action, extra in (("authorize", {"reason": "r"}), ("receive", restock)):
        form = {**form_key(client, act_url(order, return_request, action)), **extra}
        assert client.post(act_url(order, return_request, action), form).status_code == 302
    refund_form = {
        **form_key(client, act_url(order, return_request, "refund")),
        "reason": "twice",
    }
    first_refund = client.post(act_url(order, return_request, "refund"), refund_form, follow=True)
    second_refund = client.post(act_url(order, return_request, "refund"), refund_form, follow=True)

    again = f"{order.number}: this confirmation was already submitted; nothing was done again."
    assert "opened return" in messages_of(first_open)[0]
    assert messages_of(second_open) == [again]
    assert Return.objects.filter(order=order).count() == 1
    assert "refunded 47.97 EUR" in messages_of(first_refund)[0]
    assert messages_of(second_refund) == [again], (
        second_refund.redirect_chain,
        messages_of(first_refund),
    )
    # 2 x 19.99 and floor(9.00 x 39.98 / 44.98) = 7.99 of the tax, refunded once
    assert provider_totals(fake_stripe, order.pk)["refunded"] == 3998 + 799
    assert PaymentOperation.objects.filter(payment__order=order, kind="refund").count() == 1


def test_a_return_of_more_units_than_are_left_is_refused_as_the_api_refuses_it(
    client: Client,
    staff_in: Callable[..., User],
    shipped_order: Order,
    products: tuple[Product, Product],
) -> None:
    gear, _ = products
    order = shipped_order
    client.force_login(staff_in("support"))

    response = client.post(
        open_url(order),
        {**form_key(client, open_url(order)), line_field(order, gear.sku): "3", "reason": "r"},
        follow=True,
    )

    assert messages_of(response) == [
        f"{order.number}: Line {gear.sku}: 3 asked, but only 2 of the 2 shipped are not "
        "returned yet."
    ]
    assert not Return.objects.filter(order=order).exists()
    assert order.lines.get(sku=gear.sku).returned_quantity == 0


def test_refund_by_line_shows_the_amount_then_refunds_it_once(
    client: Client,
    staff_in: Callable[..., User],
    shipped_order: Order,
    products: tuple[Product, Product],
    fake_stripe: FakeStripeServer,
) -> None:
    # Given a shipped order; finance refunds the nut (damaged, the customer keeps it)
    _, nut = products
    order = shipped_order
    client.force_login(staff_in("finance"))
    filled = {
        **form_key(client, refund_lines_url(order)),
        line_field(order, nut.sku): "1",
        "reason": "arrived bent",
    }

    # When they ask for the amount, then confirm twice (a double click)
    computed = client.post(refund_lines_url(order), filled)
    first = client.post(refund_lines_url(order), {**filled, "_confirm": "1"}, follow=True)
    second = client.post(refund_lines_url(order), {**filled, "_confirm": "1"}, follow=True)

    # Then the page showed 5.00 and floor(9.00 x 5.00 / 44.98) = 1.00 of the tax, and
    # 6.00 EUR was refunded once; the nut is still the customer's
    assert computed.status_code == 200
    assert computed.context["amount"] == "6.00 EUR"
    assert "6.00 EUR" in computed.content.decode()
    assert order_lines_refund_amount(order, [(order.lines.get(sku=nut.sku), 1)]) == 600
    assert messages_of(first) == [
        f"{order.number}: refunded 6.00 EUR for 1 x {nut.sku}, now shipped."
    ]
    assert "already submitted" in messages_of(second)[0]
    assert provider_totals(fake_stripe, order.pk)["refunded"] == 600
    refunds = PaymentOperation.objects.filter(payment__order=order, kind="refund")
    assert list(refunds.values_list("amount", flat=True)) == [600]
    assert not Return.objects.filter(order=order).exists()
    history = " ".join(change_page(client, order).content.decode().split())
    assert f"Refunded 6.00 EUR for 1 x {nut.sku}" in history
    assert "arrived bent" in history


def test_refund_by_line_takes_no_more_units_than_the_line_has_outside_returns(
    client: Client,
    staff_in: Callable[..., User],
    shipped_order: Order,
    products: tuple[Product, Product],
) -> None:
    gear, _ = products
    order = shipped_order
    client.force_login(staff_in("support"))

    response = client.post(
        refund_lines_url(order),
        {
            **form_key(client, refund_lines_url(order)),
            line_field(order, gear.sku): "3",
            "reason": "r",
        },
    )

    assert response.status_code == 200
    assert response.context["form"].errors[line_field(order, gear.sku)]
    assert not PaymentOperation.objects.filter(payment__order=order, kind="refund").exists()


@pytest.mark.parametrize(
    ("groups", "status"),
    [(("support",), 200), (("finance",), 200), (("warehouse",), 403), ((), 403)],
    ids=["support", "finance", "warehouse", "none"],
)
def test_refund_by_line_is_offered_to_whom_the_refund_endpoint_admits(
    client: Client,
    staff_in: Callable[..., User],
    shipped_order: Order,
    groups: tuple[str, ...],
    status: int,
) -> None:
    client.force_login(staff_in(*groups))

    page = client.get(refund_lines_url(shipped_order))
    api = client.post(
        f"/api/v1/orders/{shipped_order.pk}/refund/", {}, content_type="application/json"
    )

    assert page.status_code == status
    assert api.status_code == (400 if status == 200 else 403)


def test_rejecting_a_return_gives_its_units_back_with_the_reason_recorded(
    client: Client,
    staff_in: Callable[..., User],
    shipped_order: Order,
    products: tuple[Product, Product],
) -> None:
    gear, _ = products
    order = shipped_order
    agent = staff_in("support")
    client.force_login(agent)
    client.post(
        open_url(order),
        {**form_key(client, open_url(order)), line_field(order, gear.sku): "2", "reason": "r"},
    )
    return_request = Return.objects.get(order=order)
    returned_while_open = order.lines.get(sku=gear.sku).returned_quantity

    rejected = client.post(
        act_url(order, return_request, "reject"),
        {**form_key(client, act_url(order, return_request, "reject")), "reason": "worn"},
        follow=True,
    )

    return_request.refresh_from_db()
    assert "reject, now rejected" in messages_of(rejected)[0]
    assert (returned_while_open, order.lines.get(sku=gear.sku).returned_quantity) == (2, 0)
    change = ReturnStatusChange.objects.get(return_request=return_request, transition="reject")
    assert (change.actor, change.reason) == (agent, "worn")
    # And the order offers a return of those units again, but the rejected one no action
    page = change_page(client, order)
    assert "return_open" in [name for name, _, _ in page.context["order_forms"]]
    assert page.context["return_actions"] == [(return_request, [])]
    assert client.get(act_url(order, return_request, "authorize")).status_code == 302
