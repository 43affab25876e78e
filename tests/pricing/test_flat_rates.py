"""Flat tax and shipping rates, end to end through the API and the fake Stripe server."""

from typing import Any

import pytest

from inventory.models import Reservation
from orders.models import Order, OrderLine
from tests.payments.conftest import GOOD_CARD
from tests.pricing.conftest import checkout_post

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

pytestmark = pytest.mark.django_db


def test_line_taxes_are_rounded_per_line_and_add_up_to_the_order_tax(
    de_rates, stocked_product, customer_client
):
    # given DE at 19% and two lines of 0.50 EUR, each taxed 9.5 cents
    stocked_product(sku="CLIP", price=50, currency="EUR")
    stocked_product(sku="PIN", price=25, currency="EUR")

    # when a customer checks out one clip and two pins by express
    response = checkout_post(customer_client, [("CLIP", 1), ("PIN", 2)], shipping_method="express")

    # then each line's tax is rounded half up on the line (10 + 10, where 19% of the
    # 1.00 subtotal would be 19), shipping 12.95 is taxed 2.46, and the order's
    # amounts are the sums of what its lines and shipping show
    assert response.status_code == 201, response.json()
    body = response.json()
    assert [(line["sku"], line["tax_amount"]) for line in body["lines"]] == [
        ("CLIP", 10),
        ("PIN", 10),
    ]
    assert body["shipping_method"] == "express"
    assert (body["subtotal"], body["shipping"], body["tax"], body["total"]) == (
        100,
        1295,
        10 + 10 + 246,
        100 + 1295 + 266,
    )
    order = Order.objects.get(pk=body["id"])
    assert (
        order.tax_amount
        == sum(OrderLine.objects.filter(order=order).values_list("tax_amount", flat=True)) + 246
    )
    assert customer_client.get(f"/api/v1/orders/{order.pk}/").json() == body


def test_the_payment_authorizes_the_total_with_tax_and_shipping(
    de_rates, stocked_product, customer_client, provider, fake_stripe
):
    # given DE rates and a product at 25.00 EUR
    stocked_product(sku="LAMP", price=2500, currency="EUR")

    # when a customer pays for two by standard shipping
    response = checkout_post(customer_client, [("LAMP", 2)], payment_method=GOOD_CARD)

    # then the order is 50.00 + 4.95 shipping + 9.50 + 0.94 tax, and the provider holds
    # exactly that amount
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["shipping"], body["tax"], body["total"]) == (495, 950 + 94, 5000 + 495 + 1044)
    assert body["payment"]["amount"] == body["total"]
    (intent,) = fake_stripe.payment_intents(order_id=body["id"])
    assert intent["amount"] == body["total"]


def test_a_country_without_rates_pays_no_tax_and_ships_standard_for_free(
    de_rates, stocked_product, customer_client
):
    # given rates for DE only
    stocked_product(sku="BOOK", price=1200, currency="EUR")
    address: dict[str, Any] = {
        "name": "A",
        "line1": "1 Rue",
        "city": "Paris",
        "postal_code": "75001",
        "country": "fr",
    }

    # when a customer orders to France by standard shipping
    response = checkout_post(customer_client, [("BOOK", 1)], address=address)

    # then the order costs its subtotal alone
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["subtotal"], body["shipping"], body["tax"], body["total"]) == (1200, 0, 0, 1200)
    assert body["lines"][0]["tax_amount"] == 0


@pytest.mark.parametrize(
    ("method", "country"),
    [("express", "FR"), ("teleport", "DE")],
    ids=["no-express-rate-for-the-country", "unknown-method"],
)
def test_shipping_that_has_no_rate_is_refused_and_nothing_is_reserved(
    de_rates, stocked_product, customer_client, method, country
):
    # given rates for DE only
    stocked_product(sku="BOOK", price=1200, currency="EUR")
    address = {"name": "A", "line1": "1", "city": "C", "postal_code": "1", "country": country}

    # when a customer asks for shipping there is no rate for
    response = checkout_post(
        customer_client, [("BOOK", 1)], address=address, shipping_method=method
    )

    # then 422 shipping_unavailable, and no order or reservation was made
    assert response.status_code == 422, response.json()
    assert response.json()["code"] == "shipping_unavailable"
    assert not Order.objects.exists()
    assert not Reservation.objects.exists()
