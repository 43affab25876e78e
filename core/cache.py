"""The shared cache's backend: Django's Redis cache, with one client per connection pool.

Django's RedisCacheClient builds a new `redis.Redis` on every cache call (get_client),
and redis-py spends about 200 Python calls building one (its table of response callbacks,
copied into a dict per client): more than the rest of an API key lookup from the cache,
on every request. A `redis.Redis` may be shared between threads, and its pool checks the
process id before it lends a connection (a forked worker opens its own), so one client
per pool is built once and reused.

Django keeps the cache objects of `django.core.cache.caches` per context, not per thread
(its CacheHandler is not thread-critical): under an ASGI server every request runs in a
context of its own, so each request built a new RedisCache, a new client with new
connection pools, and opened a new TCP connection to Redis (issue 11: 5.2 against 2.2 ms
of granian CPU per cached product list `304`, measured on one worker). The client, and
so its pools and connections, is therefore kept per process, one per configuration,
whichever RedisCache object asks for it.
"""

import re
import threading
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


_clients: dict[tuple[Any, ...], ReusedRedisCacheClient] = {}
_clients_lock = threading.Lock()


class RedisCache(DjangoRedisCache):
    """settings.CACHES' BACKEND for Redis: Django's, reusing its clients, which one
    process shares between every RedisCache of the same servers and options."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedRedisCacheClient
        self._client_servers = re.split("[;,]", server) if isinstance(server, str) else server
        self._client_options = params.get("OPTIONS", {})
        self._configuration = (
            tuple(self._client_servers),
            repr(sorted(self._client_options.items())),
        )

    def validate_key(self, key: str) -> None:
        """Nothing to check: Redis takes any key. Django's default warns about keys
        memcached would refuse, walking every character of every key on every call
        (issue 11: about 30 Python calls of each cached read)."""

    @property
    def _cache(self) -> ReusedRedisCacheClient:
        client = _clients.get(self._configuration)
        if client is None:
            with _clients_lock:
                client = _clients.get(self._configuration)
                if client is None:
                    client = _clients[self._configuration] = self._class(
                        self._client_servers, **self._client_options
                    )
        return client
