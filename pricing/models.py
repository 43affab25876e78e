"""The flat rates staff set in the admin: shipping per (country, method, currency) and
tax per country."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from core.models import TimeStampedModel


class ShippingMethod(models.TextChoices):
    STANDARD = "standard", "Standard"
    EXPRESS = "express", "Express"


class ShippingRate(TimeStampedModel):
    """What shipping costs to a country by a method, in minor units of a currency."""

    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, upper case.")
    method = models.CharField(max_length=16, choices=ShippingMethod.choices)
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField(validators=[MinValueValidator(0)])

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["country", "method", "currency"], name="shipping_rate_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="shipping_rate_amount_gte_0"),
        ]
        ordering = ["country", "method", "currency"]

    def __str__(self) -> str:
        return f"{self.country} {self.method} {self.amount} {self.currency}"

    def clean(self) -> None:
        # Checkout looks rates up by upper-case codes.
        self.country = self.country.upper()
        self.currency = self.currency.upper()


class TaxRate(TimeStampedModel):
    """A country's tax rate in basis points (2000 = 20%), and whether shipping is taxed."""

    country = models.CharField(max_length=2, unique=True)
    basis_points = models.IntegerField(validators=[MinValueValidator(0), MaxValueValidator(10000)])
    shipping_taxable = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(basis_points__gte=0) & Q(basis_points__lte=10000),
                name="tax_rate_basis_points_range",
            ),
        ]
        ordering = ["country"]

    def __str__(self) -> str:
        return f"{self.country} {self.basis_points / 100:g}%"

    def clean(self) -> None:
        self.country = self.country.upper()
