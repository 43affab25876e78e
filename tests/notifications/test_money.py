import pytest

from core.money import money_format


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1999, "EUR", "19.99 EUR"),
        (5, "usd", "0.05 USD"),
        (0, "EUR", "0.00 EUR"),
        (123456789, "EUR", "1,234,567.89 EUR"),
        (-1999, "EUR", "-19.99 EUR"),
        (1200, "JPY", "1,200 JPY"),
        (7, "KRW", "7 KRW"),
        (1500, "KWD", "1.500 KWD"),
        (-5, "BHD", "-0.005 BHD"),
    ],
)
def test_money_format_knows_each_currencys_minor_unit(amount, currency, expected):
    assert money_format(amount, currency) == expected
