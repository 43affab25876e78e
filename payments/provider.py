"""The configured payment gateway behind a circuit breaker shared by every process."""

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

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


# The gateways this process made, by (pid, settings): one per configuration, so each
# provider call reuses a pooled keep-alive connection (the gateway's urllib3 pool, shared
# by the process's threads) instead of opening a new one. A few only: tests
# point STRIPE_API_BASE at a new fault proxy each; the least recently used goes first.
_GATEWAYS: "OrderedDict[tuple[object, ...], StripeGateway]" = OrderedDict()
_GATEWAYS_LOCK = threading.Lock()
_GATEWAYS_KEPT = 8


def payment_gateway() -> StripeGateway:
    """The gateway for the current settings, made once per process and configuration.

    A pooled connection the provider closed meanwhile is re-checked by urllib3 before
    it is reused (a new one is opened); one dropped while the request is sent ends as
    any transport failure does (OutcomeUnknown, retried with the same idempotency key).
    """
    options: dict[str, Any] = {
        "api_key": settings.STRIPE_API_KEY,
        "api_base": settings.STRIPE_API_BASE,
        "connect_timeout": settings.STRIPE_CONNECT_TIMEOUT_SECONDS,
        "read_timeout": settings.STRIPE_READ_TIMEOUT_SECONDS,
        "forbid_redirects": settings.STRIPE_FORBID_REDIRECTS,
    }
    # A forked child must not share its parent's sockets: the pid is part of the key.
    config = (os.getpid(), *options.values())
    with _GATEWAYS_LOCK:
        gateway = _GATEWAYS.get(config)
        if gateway is not None:
            _GATEWAYS.move_to_end(config)
            return gateway
        gateway = StripeGateway(**options)
        _GATEWAYS[config] = gateway
        while len(_GATEWAYS) > _GATEWAYS_KEPT:
            _GATEWAYS.popitem(last=False)
        return gateway


def provider_call(call: Callable[[StripeGateway], T]) -> T:
    """Call the provider through the breaker; ProviderCircuitOpen when it is open."""
    try:
        return payment_breaker().call(call, payment_gateway())
    except pybreaker.CircuitBreakerError as error:
        raise ProviderCircuitOpen() from error


def retry_after_seconds() -> int:
    return max(1, settings.PAYMENT_BREAKER_RESET_SECONDS)
