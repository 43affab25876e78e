"""The shared cache's backend (core.cache.RedisCache) against a real redis-server: one
client per pool, reused by every call and by every request context of the process; it
survives a Redis restart and a fork."""

import contextvars
import multiprocessing
from typing import Any

from django.core.cache import CacheHandler

from core.cache import RedisCache

pytest_plugins = ("tests.support.redis_server",)


def cache_for(url: str) -> RedisCache:
    return RedisCache(url, {"KEY_PREFIX": "oms-test", "OPTIONS": {"socket_timeout": 2}})


def _child_reads(cache: RedisCache, queue: Any) -> None:
    queue.put(cache.get("shared"))


def test_every_call_reuses_one_client_and_the_cache_behaves_as_djangos(redis_server):
    # Given the backend on a private Redis
    cache = cache_for(redis_server.url)

    # When it sets, reads, counts and deletes
    cache.set("key", {"n": 1}, 30)
    assert cache.get("key") == {"n": 1}
    assert cache.add("key", "other", 30) is False
    cache.set("count", 1, 30)
    assert cache.incr("count") == 2
    cache.delete("key")
    assert cache.get("key", "gone") == "gone"

    # Then every call went through one client (Django's builds one per call)
    client = cache._cache.get_client()
    assert cache._cache.get_client(write=True) is client
    assert cache._cache.get_client("key") is client


def test_the_reused_client_reconnects_after_a_restart_and_in_a_forked_process(redis_server):
    # Given a value read once through the reused client
    cache = cache_for(redis_server.url)
    cache.set("shared", "before", 30)
    assert cache.get("shared") == "before"

    # When Redis restarts (empty: no persistence), Then the next calls reconnect
    redis_server.stop()
    redis_server.start()
    assert cache.get("shared") is None  # (the restart lost it)
    cache.set("shared", "after", 30)
    assert cache.get("shared") == "after"

    # And a forked process (as a gunicorn worker) reads with a connection of its own
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_reads, args=(cache, queue))
    child.start()
    child.join(10)
    assert queue.get(timeout=5) == "after"
    assert cache.get("shared") == "after"


def test_requests_in_contexts_of_their_own_share_one_client_and_one_connection(redis_server):
    # Given Django's cache handler over this backend (under an ASGI server each request
    # runs in a context of its own, and the handler keeps one cache object per context)
    handler = CacheHandler(
        {"default": {"BACKEND": "core.cache.RedisCache", "LOCATION": redis_server.url}}
    )

    def request(number: int) -> RedisCache:
        cache = handler["default"]
        cache.set(f"request-{number}", number, 30)
        assert cache.get(f"request-{number}") == number
        return cache

    # When ten requests each use the cache in a new context
    caches = [contextvars.copy_context().run(request, number) for number in range(10)]

    # Then each had a cache object of its own, all over one client and one connection
    assert len({id(cache) for cache in caches}) == 10
    assert len({id(cache._cache) for cache in caches}) == 1
    pool = caches[0]._cache.get_client().connection_pool
    assert len(pool._available_connections) + len(pool._in_use_connections) == 1
    # (another configuration gets a client of its own)
    assert cache_for(redis_server.url)._cache is not caches[0]._cache
