"""Tax and shipping errors, each with a stable code."""

from django.conf import settings

from core.errors import DomainError


class ShippingUnavailable(DomainError):
    code = "shipping_unavailable"
    status = 422
    title = "The order cannot ship to this country by this method"


class TaxServiceUnavailable(DomainError):
    code = "tax_service_unavailable"
    status = 503
    title = "The tax service is unavailable; try again shortly"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, settings.TAX_BREAKER_RESET_SECONDS))}
