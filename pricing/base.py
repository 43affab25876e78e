"""The pricing interface: what a provider is given and what it answers.

Amounts are integer minor units. A line's tax is rounded on the line, half up
(`line_tax`); the order's tax is the sum of its lines' taxes plus the shipping's tax, so
the total always equals the sum of what the lines and shipping show.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

BASIS_POINTS = 10_000


@dataclass(frozen=True)
class PricedLine:
    """A line to price: its SKU (unique in the order), unit price and quantity."""

    sku: str
    unit_price: int
    quantity: int

    @property
    def amount(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class PricingRequest:
    lines: Sequence[PricedLine]
    country: str
    currency: str
    shipping_method: str


@dataclass(frozen=True)
class Quote:
    """Tax per line (by SKU, in the request's order), shipping and its tax."""

    line_taxes: dict[str, int]
    shipping_amount: int
    shipping_tax: int

    @property
    def tax_amount(self) -> int:
        return sum(self.line_taxes.values()) + self.shipping_tax


class PricingProvider(Protocol):
    def quote(self, request: PricingRequest) -> Quote: ...


def tax_of(amount: int, basis_points: int) -> int:
    """Tax on a non-negative amount at a rate in basis points, rounded half up to the
    minor unit, in integer arithmetic only."""
    return (amount * basis_points + BASIS_POINTS // 2) // BASIS_POINTS
