"""config.asgi under uvicorn: a sync view is served by the WSGI application in one thread
hop (core.asgi_routing) with the same middleware (request ids, problem+json, body
limits) and its database connection returned after each request, and every request
reuses the process's Redis connection for the shared cache; async views (long polls)
stay on Django's ASGI handler."""

import time
import uuid
from typing import Any

import pytest

from core.asgi_routing import view_is_async
from tests.conftest import api_key_for, order_payload
from tests.factories import StaffFactory, UserFactory
from tests.perf.test_query_budgets import products

pytest_plugins = ("tests.support.asgi_server", "tests.support.redis_server")


def test_only_async_views_are_routed_to_the_asgi_handler():
    assert view_is_async("/api/v1/events/")
    assert view_is_async(f"/api/v1/orders/{uuid.uuid4()}/events/")
    assert not view_is_async("/api/v1/orders/")
    assert not view_is_async(f"/api/v1/orders/{uuid.uuid4()}/")
    assert not view_is_async("/api/v1/no-such-thing/")


@pytest.mark.django_db(transaction=True)
def test_sync_views_under_uvicorn_keep_their_middleware_and_return_connections(
    start_asgi_server: Any,
):
    # Given the API under uvicorn with a pool of 2 connections per process
    server = start_asgi_server(env={"DATABASE_POOL": "1", "DATABASE_POOL_MAX_SIZE": "2"})
    catalogue = products(1)
    customer = UserFactory()
    key = api_key_for(customer)

    # When a checkout is posted (a body through the WSGI side), Then it is placed
    status, order = server.post(
        "/api/v1/orders/",
        order_payload([(catalogue[0].sku, 1)]),
        key=key,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 201, order

    # When it is read many more times than the pool has connections, Then every read
    # answers at once (each request gave its connection back) with its request id
    started = time.monotonic()
    for _ in range(30):
        connection = server.connection()
        try:
            connection.request(
                "GET",
                f"/api/v1/orders/{order['id']}/",
                headers={"Authorization": f"Bearer {key}", "X-Request-ID": "req-asgi-1"},
            )
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("X-Request-ID") == "req-asgi-1"
            assert response.read()
        finally:
            connection.close()
    assert time.monotonic() - started < 10  # the pool's timeout

    # And errors are still problem+json from the same middleware
    status, problem = server.get("/api/v1/no-such-thing/", key=key)
    assert status == 404
    assert problem["status"] == 404

    # And a page that sets cookies (the admin's sign-in) sends them as valid headers
    connection = server.connection()
    try:
        connection.request("GET", "/admin/login/")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Set-Cookie").startswith("csrftoken=")
        assert response.read()
    finally:
        connection.close()

    # And an async view (the event feed's long poll) still answers from the ASGI side
    status, page = server.get("/api/v1/events/?wait=1", key=api_key_for(StaffFactory()))
    assert status == 200
    assert set(page) == {"events", "next_cursor"}


@pytest.mark.django_db(transaction=True)
def test_requests_under_uvicorn_share_the_processs_redis_connection(
    start_asgi_server: Any, redis_server: Any
):
    # Given the API under uvicorn with the shared cache in a private Redis (API keys and
    # the product list cached there)
    server = start_asgi_server(
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "0",
            "CACHE_REDIS_URL": redis_server.url,
            "API_KEY_CACHE_SECONDS": "60",
            "PRODUCT_LIST_CACHE_SECONDS": "5",
        }
    )
    products(2)
    key = api_key_for(UserFactory())
    assert server.get("/api/v1/products/", key=key)[0] == 200
    redis = redis_server.client()
    connections_before = redis.info("stats")["total_connections_received"]

    # When 20 more requests read the key and the list from the cache, each in a context
    # of its own (as an ASGI server runs every request)
    for _ in range(20):
        status, listed = server.get("/api/v1/products/", key=key)
        assert status == 200
        assert len(listed) == 2

    # Then they went over the connection the process already had: Django's cache object
    # per context no longer means a new client and a new connection per request
    assert redis.info("stats")["total_connections_received"] - connections_before <= 1
