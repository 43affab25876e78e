"""Reads of the flat rates."""

from dataclasses import dataclass

from django.db import connection

from pricing.models import ShippingRate, TaxRate


@dataclass(frozen=True)
class Rates:
    """The rates that apply to one order: None where none is configured."""

    shipping_amount: int | None
    tax_basis_points: int | None
    shipping_taxable: bool


def rates_for(*, country: str, shipping_method: str, currency: str) -> Rates:
    """The shipping rate and tax rate for a destination, in one statement (checkout
    budgets its statements: see tests/perf/test_query_budgets.py)."""
    shipping = ShippingRate._meta.db_table
    tax = TaxRate._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT
              (SELECT amount FROM {shipping}
                WHERE country = %s AND method = %s AND currency = %s),
              (SELECT basis_points FROM {tax} WHERE country = %s),
              (SELECT shipping_taxable FROM {tax} WHERE country = %s)
            """,  # noqa: S608 - table names come from the models, values are parameters
            [country, shipping_method, currency, country, country],
        )
        shipping_amount, basis_points, shipping_taxable = cursor.fetchone()
    return Rates(
        shipping_amount=shipping_amount,
        tax_basis_points=basis_points,
        shipping_taxable=bool(shipping_taxable),
    )
