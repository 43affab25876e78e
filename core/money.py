"""Money for people to read and type: amounts in minor units plus an ISO 4217 currency
code."""

from decimal import Decimal, InvalidOperation

# Currencies whose minor unit is not a hundredth; every other currency has two decimals.
CURRENCY_DECIMALS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def money_format(amount: int, currency: str) -> str:
    """Render minor units with thousands separators: (123456, "EUR") -> "1,234.56 EUR",
    (1200, "JPY") -> "1,200 JPY"."""
    code = currency.upper()
    decimals = CURRENCY_DECIMALS.get(code, 2)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**decimals)
    number = f"{major:,}" if decimals == 0 else f"{major:,}.{minor:0{decimals}d}"
    return f"{sign}{number} {code}"


def money_parse(text: str, currency: str) -> int:
    """Major units as typed ("12.34") to integer minor units (1234) in the currency's
    exponent, exactly; ValueError for anything else (more decimals than the currency has,
    not a number, not positive)."""
    decimals = CURRENCY_DECIMALS.get(currency.upper(), 2)
    try:
        amount = Decimal(text.strip().replace(",", ""))
    except InvalidOperation as error:
        raise ValueError("Enter an amount such as 12.34.") from error
    if not amount.is_finite():
        raise ValueError("Enter an amount such as 12.34.")
    if amount <= 0:
        raise ValueError("Enter an amount above zero.")
    minor = amount.scaleb(decimals)
    if minor != minor.to_integral_value():
        raise ValueError(f"{currency} has {decimals} decimal places at most.")
    return int(minor)
