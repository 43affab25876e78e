from typing import Any

from django.core.management.base import BaseCommand

from pricing.models import ShippingRate, TaxRate

# (country, basis points, shipping taxable)
TAX_RATES = [("DE", 1900, True), ("GB", 2000, True)]
# (country, method, currency, amount)
SHIPPING_RATES = [
    ("DE", "standard", "EUR", 495),
    ("DE", "express", "EUR", 1295),
    ("GB", "standard", "EUR", 895),
    ("GB", "express", "EUR", 1995),
]


class Command(BaseCommand):
    help = "Add demo tax and shipping rates for DE and GB (only those that are missing)."

    def handle(self, *args: Any, **options: Any) -> None:
        added = 0
        for country, basis_points, shipping_taxable in TAX_RATES:
            _rate, created = TaxRate.objects.get_or_create(
                country=country,
                defaults={"basis_points": basis_points, "shipping_taxable": shipping_taxable},
            )
            added += created
        for country, method, currency, amount in SHIPPING_RATES:
            _shipping, created = ShippingRate.objects.get_or_create(
                country=country, method=method, currency=currency, defaults={"amount": amount}
            )
            added += created
        self.stdout.write(f"Added {added} rates.")
