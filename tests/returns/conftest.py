"""Returns need a captured order: the payments tests' provider (fake Stripe behind a
proxy), product and checkout fixtures."""

from tests.payments.conftest import checkout, product, provider

__all__ = ["checkout", "product", "provider"]
