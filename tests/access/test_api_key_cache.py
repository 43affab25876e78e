"""API keys kept in the shared cache (API_KEY_CACHE_SECONDS > 0, Redis): a request
needs no statement to know its caller, and a revoked or rotated key stops at once in
every process (the tombstone is in the Redis every process reads)."""

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from access.models import ApiKey
from access.services import (
    _cache_add,
    api_key_authenticate,
    api_key_revoke,
    api_key_rotate,
    key_hash,
)
from core.actors import Actor
from tests.conftest import api_key_for
from tests.factories import UserFactory
from tests.support.redis_server import RedisServer

PRODUCTS = "/api/v1/products/"


def port_in_my_range() -> int:
    for port in range(18500, 18600):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18500-18599")


@pytest.fixture
def shared_cache(tmp_path: Any, settings: Any) -> Iterator[RedisServer]:
    server = RedisServer(workdir=tmp_path, port=port_in_my_range()).start()
    settings.CACHES = {
        "default": {
            "BACKEND": "core.cache.RedisCache",
            "LOCATION": server.url,
            "KEY_PREFIX": "oms-test",
        }
    }
    settings.API_KEY_CACHE_SECONDS = 60
    try:
        yield server
    finally:
        caches.close_all()
        server.stop()


def key_statements(client: APIClient) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        status = client.get(PRODUCTS).status_code
    return status, [q["sql"] for q in captured.captured_queries if "access_apikey" in q["sql"]]


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def cached_value(server: RedisServer, key: str) -> bytes | None:
    """What any process reads for the key: straight from Redis."""
    with server.client() as client:
        names = client.keys(f"*access:api-key:{key_hash(key)}")
        return client.get(names[0]) if names else None


@pytest.mark.django_db
def test_a_cached_key_is_recognised_without_a_statement(shared_cache):
    client = client_with(api_key_for(UserFactory()))
    assert client.get(PRODUCTS).status_code == 200  # read, cached, its use recorded

    status, statements = key_statements(client)

    assert status == 200
    assert statements == []


@pytest.mark.django_db
def test_a_revoked_key_stops_at_once_in_every_process(shared_cache):
    # Given a key in use, so cached in the shared cache
    key = api_key_for(UserFactory())
    client = client_with(key)
    assert client.get(PRODUCTS).status_code == 200
    assert cached_value(shared_cache, key) is not None

    # When it is revoked
    api_key_revoke(key_id=ApiKey.objects.get(key_hash=key_hash(key)).pk, actor=Actor.system())

    # Then Redis, which every process reads, holds a tombstone, and the key is refused
    assert b"forgotten" in (cached_value(shared_cache, key) or b"")
    response = client.get(PRODUCTS)
    assert response.status_code == 401
    assert response.json()["detail"] == "API key revoked."


@pytest.mark.django_db
def test_a_request_that_read_the_key_before_its_revoke_cannot_cache_it_again(shared_cache):
    # Given a request that read the active key from the database ...
    key = api_key_for(UserFactory())
    read_before = ApiKey.objects.select_related("user").get(key_hash=key_hash(key))
    # ... when the key is revoked before that request caches what it read
    api_key_revoke(key_id=read_before.pk, actor=Actor.system())
    _cache_add(key_hash(key), read_before)

    # Then the key is still refused
    api_key, failure = api_key_authenticate(key)
    assert api_key is None
    assert failure == "API key revoked."


@pytest.mark.django_db
def test_a_rotated_key_is_read_again_with_its_new_expiry(shared_cache):
    key = api_key_for(UserFactory())
    client = client_with(key)
    assert client.get(PRODUCTS).status_code == 200
    old = ApiKey.objects.get(key_hash=key_hash(key))

    api_key_rotate(key_id=old.pk, actor=Actor.system())

    status, statements = key_statements(client)
    assert status == 200  # within the overlap
    assert statements  # read from the database again
    api_key, _ = api_key_authenticate(key)
    assert api_key is not None
    assert api_key.expires_at == ApiKey.objects.get(pk=old.pk).expires_at


@pytest.mark.django_db
def test_keys_are_read_from_the_database_while_the_cache_is_down(shared_cache):
    client = client_with(api_key_for(UserFactory()))
    shared_cache.stop()

    status, statements = key_statements(client)

    assert status == 200
    assert statements
