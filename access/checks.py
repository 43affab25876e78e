from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

SHARED_CACHE_BACKENDS = (
    "core.cache.RedisCache",
    "django.core.cache.backends.redis.RedisCache",
    "django.core.cache.backends.memcached.PyMemcacheCache",
)


@register(Tags.caches)
def rate_limit_cache_is_shared(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Per-process counters multiply every limit by the number of processes."""
    if not settings.RATE_LIMIT_ENABLED or settings.DEBUG:
        return []
    backend = settings.CACHES[settings.RATE_LIMIT_CACHE]["BACKEND"]
    if backend in SHARED_CACHE_BACKENDS:
        return []
    return [
        Warning(
            f"Rate limits count in {backend}, which each process keeps for itself.",
            hint="Set CACHE_REDIS_URL so every process shares the counters.",
            id="access.W001",
        )
    ]


@register(Tags.caches)
def api_key_cache_is_shared(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A revoke clears the key from the cache it can reach: a cache each process keeps
    for itself would let a revoked key work on in the others."""
    if settings.API_KEY_CACHE_SECONDS <= 0:
        return []
    backend = settings.CACHES[settings.API_KEY_CACHE]["BACKEND"]
    if backend in SHARED_CACHE_BACKENDS:
        return []
    return [
        Error(
            f"API_KEY_CACHE_SECONDS is on, but keys would be cached in {backend}, which "
            "each process keeps for itself.",
            hint="Set CACHE_REDIS_URL, or API_KEY_CACHE_SECONDS=0.",
            id="access.E001",
        )
    ]
