"""The configured payment gateway behind a circuit breaker shared by every process."""

from collections.abc import Callable
from typing import TypeVar

import pybreaker
import redis
from django.conf import settings

from payments.gateways.base import (
    PaymentDeclined,
    ProviderRequestRejected,
)
from payments.gateways.stripe import StripeGateway

T = TypeVar("T")

_breaker: pybreaker.CircuitBreaker | None = None


class ProviderCircuitOpen(Exception):
    """The breaker is open: the call was not made."""


def payment_breaker() -> pybreaker.CircuitBreaker:
    global _breaker
    if _breaker is None:
        storage: pybreaker.CircuitBreakerStorage
        if settings.PAYMENT_BREAKER_REDIS_URL:
            client = redis.Redis.from_url(
                settings.PAYMENT_BREAKER_REDIS_URL,
                socket_connect_timeout=0.5,
                socket_timeout=0.5,
            )
            # If Redis is down the breaker falls back to closed: calls still go out,
            # guarded by their own timeouts.
            storage = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, client, namespace="oms-payment-provider"
            )
        else:
            storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        _breaker = pybreaker.CircuitBreaker(
            fail_max=settings.PAYMENT_BREAKER_FAIL_MAX,
            reset_timeout=settings.PAYMENT_BREAKER_RESET_SECONDS,
            exclude=[PaymentDeclined, ProviderRequestRejected],
            state_storage=storage,
            throw_new_error_on_trip=False,
            name="payment-provider",
        )
    return _breaker


def payment_breaker_reset() -> None:
    """Forget the breaker (settings changed, or a test starts afresh)."""
    global _breaker
    if _breaker is not None:
        _breaker.close()
    _breaker = None


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
    )


def provider_call(call: Callable[[StripeGateway], T]) -> T:
    """Call the provider through the breaker; ProviderCircuitOpen when it is open."""
    try:
        return payment_breaker().call(call, payment_gateway())
    except pybreaker.CircuitBreakerError as error:
        raise ProviderCircuitOpen() from error


def retry_after_seconds() -> int:
    return max(1, settings.PAYMENT_BREAKER_RESET_SECONDS)
