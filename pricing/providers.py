"""The pricing providers: flat rates from the admin, or an HTTP tax service.

HTTP tax service contract: ``POST TAX_SERVICE_URL`` with JSON
``{"country", "currency", "shipping_method", "shipping_amount",
"lines": [{"sku", "unit_price", "quantity", "amount"}]}``; a 200 answer
``{"lines": [{"sku", "tax_amount"}], "shipping_tax_amount"}`` gives the tax of each line
and of the shipping, non-negative integers in minor units. Anything else (no answer
within TAX_SERVICE_TIMEOUT_SECONDS, another status, a body that does not give every line
its tax) is a failure and counts toward the ``tax-service`` circuit breaker.
"""

import logging
from typing import Any

import pybreaker
import requests
from django.conf import settings

from core.breakers import circuit_breaker
from core.metrics import breaker_source
from pricing.base import PricingRequest, Quote, tax_of
from pricing.errors import ShippingUnavailable, TaxServiceUnavailable
from pricing.models import ShippingMethod
from pricing.selectors import Rates, rates_for

logger = logging.getLogger(__name__)

TAX_BREAKER_NAME = "tax-service"


class TaxServiceFailed(Exception):
    """The tax service did not give a usable answer."""


def _rates(request: PricingRequest) -> tuple[Rates, int]:
    """The destination's rates and shipping amount; ShippingUnavailable when the method
    is unknown, or is not standard and has no rate for the country and currency (standard
    shipping without a configured rate is free)."""
    if request.shipping_method not in ShippingMethod.values:
        raise ShippingUnavailable(
            f"Unknown shipping method '{request.shipping_method}'; "
            f"use one of {', '.join(ShippingMethod.values)}.",
            shipping_method=request.shipping_method,
        )
    rates = rates_for(
        country=request.country,
        shipping_method=request.shipping_method,
        currency=request.currency,
    )
    shipping_amount = rates.shipping_amount
    if shipping_amount is None:
        if request.shipping_method != ShippingMethod.STANDARD:
            raise ShippingUnavailable(
                f"No {request.shipping_method} shipping to {request.country} "
                f"in {request.currency}.",
                shipping_method=request.shipping_method,
                country=request.country,
            )
        shipping_amount = 0
    return rates, shipping_amount


def _flat_quote(request: PricingRequest, rates: Rates, shipping_amount: int) -> Quote:
    basis_points = rates.tax_basis_points or 0
    return Quote(
        line_taxes={line.sku: tax_of(line.amount, basis_points) for line in request.lines},
        shipping_amount=shipping_amount,
        shipping_tax=tax_of(shipping_amount, basis_points) if rates.shipping_taxable else 0,
    )


class FlatRateProvider:
    """Shipping and tax from the rates staff set in the admin. A country without a tax
    rate pays no tax."""

    def quote(self, request: PricingRequest) -> Quote:
        rates, shipping_amount = _rates(request)
        return _flat_quote(request, rates, shipping_amount)


def tax_breaker() -> pybreaker.CircuitBreaker:
    return circuit_breaker(
        TAX_BREAKER_NAME,
        fail_max=settings.TAX_BREAKER_FAIL_MAX,
        reset_timeout=settings.TAX_BREAKER_RESET_SECONDS,
    )


@breaker_source
def tax_breakers() -> None:
    """Make the tax service's breaker while it is in use, so /metrics reports it."""
    if settings.TAX_PROVIDER == "http":
        tax_breaker()


class HttpTaxProvider:
    """Shipping from the flat rates, tax from the HTTP tax service behind a circuit
    breaker. When the service fails (or the breaker is open): TaxServiceUnavailable, or
    the flat tax rates when TAX_SERVICE_FALLBACK is "flat"."""

    def __init__(self, *, url: str, timeout_seconds: float, fallback: str) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.fallback = fallback

    def quote(self, request: PricingRequest) -> Quote:
        rates, shipping_amount = _rates(request)
        try:
            return tax_breaker().call(self._service_quote, request, shipping_amount)
        except (TaxServiceFailed, pybreaker.CircuitBreakerError) as error:
            if self.fallback == "flat":
                logger.warning("Tax service failed (%s); using the flat tax rates", error)
                return _flat_quote(request, rates, shipping_amount)
            raise TaxServiceUnavailable(f"The tax service failed: {error}") from error

    def _service_quote(self, request: PricingRequest, shipping_amount: int) -> Quote:
        payload: dict[str, Any] = {
            "country": request.country,
            "currency": request.currency,
            "shipping_method": request.shipping_method,
            "shipping_amount": shipping_amount,
            "lines": [
                {
                    "sku": line.sku,
                    "unit_price": line.unit_price,
                    "quantity": line.quantity,
                    "amount": line.amount,
                }
                for line in request.lines
            ],
        }
        try:
            response = requests.post(
                self.url,
                json=payload,
                timeout=(self.timeout_seconds, self.timeout_seconds),
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise TaxServiceFailed(type(error).__name__) from error
        if response.status_code != 200:
            raise TaxServiceFailed(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as error:
            raise TaxServiceFailed("unreadable answer") from error
        return _parsed(body, request, shipping_amount)


def _amount(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TaxServiceFailed(f"not an amount: {value!r}")
    return value


def _parsed(body: Any, request: PricingRequest, shipping_amount: int) -> Quote:
    if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
        raise TaxServiceFailed("answer without lines")
    taxes = {}
    for line in body["lines"]:
        if not isinstance(line, dict):
            raise TaxServiceFailed("malformed line")
        taxes[line.get("sku")] = _amount(line.get("tax_amount"))
    missing = [line.sku for line in request.lines if line.sku not in taxes]
    if missing:
        raise TaxServiceFailed(f"no tax for {', '.join(missing)}")
    return Quote(
        line_taxes={line.sku: taxes[line.sku] for line in request.lines},
        shipping_amount=shipping_amount,
        shipping_tax=_amount(body.get("shipping_tax_amount", 0)),
    )
