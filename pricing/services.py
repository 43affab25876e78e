"""Price an order: the configured provider's quote (TAX_PROVIDER)."""

from django.conf import settings

from pricing.base import PricingProvider, PricingRequest, Quote
from pricing.providers import FlatRateProvider, HttpTaxProvider


def pricing_provider() -> PricingProvider:
    if settings.TAX_PROVIDER == "http":
        return HttpTaxProvider(
            url=settings.TAX_SERVICE_URL,
            timeout_seconds=settings.TAX_SERVICE_TIMEOUT_SECONDS,
            fallback=settings.TAX_SERVICE_FALLBACK,
        )
    return FlatRateProvider()


def quote_calls_out() -> bool:
    """Whether a quote calls a remote service (then no transaction may be open around it)."""
    return settings.TAX_PROVIDER == "http"


def order_quote(request: PricingRequest) -> Quote:
    """Shipping and tax for an order's lines. Raise ShippingUnavailable when it cannot
    ship there that way, TaxServiceUnavailable when the tax service fails without a
    fallback."""
    return pricing_provider().quote(request)
