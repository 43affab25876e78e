"""The shared cache's backend: Django's Redis cache, with one client per connection pool.

Django's RedisCacheClient builds a new `redis.Redis` on every cache call (get_client),
and redis-py spends about 200 Python calls building one (its table of response callbacks,
copied into a dict per client): more than the rest of an API key lookup from the cache,
on every request. A `redis.Redis` may be shared between threads, and its pool checks the
process id before it lends a connection (a forked worker opens its own), so one client
per pool is built once and reused.
"""

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class ReusedRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[Any, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(pool)
        if client is None:
            client = self._clients[pool] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class RedisCache(DjangoRedisCache):
    """settings.CACHES' BACKEND for Redis: Django's, reusing its clients."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedRedisCacheClient
