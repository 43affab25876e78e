"""Rate limits: fixed-window counters on the shared cache, per API key and per client IP.

Each endpoint's rule (access.policy) names its class: `reads`, `writes` or `checkout`
(placing and paying orders, which call the payment provider). Every class has a quota
per key and one per IP over RATE_LIMIT_WINDOW_SECONDS (settings.RATE_LIMITS). A counter
is one cache entry per (quota, subject, window), incremented atomically (Redis INCR),
that expires with its window: no read-modify-write, so concurrent requests cannot slip
past a quota. The IP is counted before the key is checked, so guessing keys is limited
too.

Answers carry the IETF draft's fields (draft-ietf-httpapi-ratelimit-headers-10):
`RateLimit-Policy: "checkout-key";q=60;w=60, ...` and `RateLimit: "checkout-key";r=59;t=42,
...`; a refused request is 429 `throttled` with `Retry-After`.
"""

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest


@dataclass(frozen=True)
class Quota:
    rate_class: str
    per: str  # "key" or "ip"
    limit: int
    window: int

    @property
    def name(self) -> str:
        return f"{self.rate_class}-{self.per}"

    def policy_item(self) -> str:
        return f'"{self.name}";q={self.limit};w={self.window}'


@dataclass(frozen=True)
class Usage:
    quota: Quota
    count: int
    reset: int  # seconds until the window ends

    @property
    def remaining(self) -> int:
        return max(self.quota.limit - self.count, 0)

    @property
    def exceeded(self) -> bool:
        return self.count > self.quota.limit

    def limit_item(self) -> str:
        return f'"{self.quota.name}";r={self.remaining};t={self.reset}'


def quotas_for(rate_class: str, *, with_key: bool) -> list[Quota]:
    limits = settings.RATE_LIMITS[rate_class]
    window = settings.RATE_LIMIT_WINDOW_SECONDS
    quotas = [Quota(rate_class, "ip", limits["ip"], window)]
    if with_key:
        quotas.insert(0, Quota(rate_class, "key", limits["key"], window))
    return quotas


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the address the trusted proxies in front of oms saw."""
    proxies = settings.RATE_LIMIT_TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def key_subject(authorization: str) -> str | None:
    """A stable id for the key in an Authorization header (never the key itself)."""
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() not in ("bearer", "token"):
        return None
    return hashlib.sha256(parts[1].encode()).hexdigest()[:32]


def clock() -> float:
    """Seconds since the epoch (tests replace it to stay inside one window)."""
    return time.time()


def usage_count(quota: Quota, subject: str) -> Usage:
    """Count one request against the quota for this subject; return the usage after it."""
    now = clock()
    window_start = int(now // quota.window) * quota.window
    reset = max(math.ceil(window_start + quota.window - now), 1)
    cache = caches[settings.RATE_LIMIT_CACHE]
    cache_key = f"ratelimit:{quota.name}:{subject}:{window_start}"
    try:
        count = cache.incr(cache_key)
    except ValueError:  # the window's first request (or a concurrent one's)
        added = cache.add(cache_key, 1, timeout=quota.window + 1)
        count = 1 if added else cache.incr(cache_key)
    return Usage(quota, count, reset)
