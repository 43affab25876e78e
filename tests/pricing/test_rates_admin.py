"""Staff keep the flat rates in the admin, and checkout uses what they set."""

from io import StringIO

import pytest
from django.core.management import call_command

from pricing.models import ShippingRate, TaxRate
from tests.pricing.conftest import checkout_post

pytestmark = pytest.mark.django_db


def test_staff_add_and_edit_rates_in_the_admin_and_checkout_uses_them(
    admin_client, stocked_product, customer_client
):
    # given no rates, and a product at 10.00 EUR
    stocked_product(sku="BOOK", price=1000, currency="EUR")

    # when staff add a 7% DE tax rate (shipping not taxed; the code typed in lower case)
    # and an express rate, then
    # change the express rate to 9.00
    added = admin_client.post(
        "/admin/pricing/taxrate/add/",
        {"country": "de", "basis_points": "700"},
    )
    assert added.status_code == 302, added.content
    added = admin_client.post(
        "/admin/pricing/shippingrate/add/",
        {"country": "DE", "method": "express", "currency": "EUR", "amount": "1500"},
    )
    assert added.status_code == 302, added.content
    rate = ShippingRate.objects.get(country="DE", method="express")
    changed = admin_client.post(
        f"/admin/pricing/shippingrate/{rate.pk}/change/",
        {"country": "DE", "method": "express", "currency": "EUR", "amount": "900"},
    )
    assert changed.status_code == 302, changed.content

    # then the lists show them, and an express checkout to DE pays 9.00 shipping
    # (untaxed) and 7% of 10.00
    assert TaxRate.objects.get(country="DE").shipping_taxable is False
    listing = admin_client.get("/admin/pricing/shippingrate/")
    assert listing.status_code == 200
    assert b"express" in listing.content
    assert admin_client.get("/admin/pricing/taxrate/").status_code == 200
    response = checkout_post(customer_client, [("BOOK", 1)], shipping_method="express")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["shipping"], body["tax"], body["total"]) == (900, 70, 1000 + 900 + 70)


def test_the_admin_refuses_a_negative_amount_or_a_rate_above_100_percent(admin_client):
    # when staff enter out-of-range values
    negative = admin_client.post(
        "/admin/pricing/shippingrate/add/",
        {"country": "DE", "method": "standard", "currency": "EUR", "amount": "-1"},
    )
    too_high = admin_client.post(
        "/admin/pricing/taxrate/add/", {"country": "DE", "basis_points": "10001"}
    )

    # then the forms come back with errors and nothing is saved
    assert negative.status_code == 200
    assert too_high.status_code == 200
    assert not ShippingRate.objects.exists()
    assert not TaxRate.objects.exists()


def test_seed_demo_rates_adds_only_what_is_missing():
    # given a DE tax rate staff already changed
    TaxRate.objects.create(country="DE", basis_points=700)

    # when the demo rates are seeded twice
    call_command("seed_demo_rates", stdout=StringIO())
    call_command("seed_demo_rates", stdout=StringIO())

    # then GB's rate and every shipping rate are there once, and DE's is left as it was
    assert dict(TaxRate.objects.values_list("country", "basis_points")) == {"DE": 700, "GB": 2000}
    assert ShippingRate.objects.count() == 4
