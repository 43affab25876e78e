"""The configured payment gateway behind a circuit breaker shared by every process."""

from collections.abc import Callable
from typing import TypeVar

import pybreaker
import redis
from django.conf import settings

from core.breakers import circuit_breaker
from payments.errors import ProviderCircuitOpen
from payments.gateways.base import (
    PaymentDeclined,
    ProviderRequestRejected,
)
from payments.gateways.stripe import StripeGateway

T = TypeVar("T")

PAYMENT_BREAKER_NAME = "payment-provider"


def payment_breaker() -> pybreaker.CircuitBreaker:
    return circuit_breaker(
        PAYMENT_BREAKER_NAME,
        fail_max=settings.PAYMENT_BREAKER_FAIL_MAX,
        reset_timeout=settings.PAYMENT_BREAKER_RESET_SECONDS,
        exclude=[PaymentDeclined, ProviderRequestRejected],
    )


def payment_breaker_state() -> str:
    try:
        return str(payment_breaker().current_state)
    except redis.RedisError:
        return "unknown"


def payment_gateway() -> StripeGateway:
    return StripeGateway(
        api_key=settings.STRIPE_API_KEY,
        api_base=settings.STRIPE_API_BASE,
        connect_timeout=settings.STRIPE_CONNECT_TIMEOUT_SECONDS,
        read_timeout=settings.STRIPE_READ_TIMEOUT_SECONDS,
        forbid_redirects=settings.STRIPE_FORBID_REDIRECTS,
    )


def provider_call(call: Callable[[StripeGateway], T]) -> T:
    """Call the provider through the breaker; ProviderCircuitOpen when it is open."""
    try:
        return payment_breaker().call(call, payment_gateway())
    except pybreaker.CircuitBreakerError as error:
        raise ProviderCircuitOpen() from error


def retry_after_seconds() -> int:
    return max(1, settings.PAYMENT_BREAKER_RESET_SECONDS)
