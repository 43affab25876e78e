"""Rate limits per key and per IP, checkout apart from reads, counted in a private
redis-server (never the shared one)."""

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.conftest import api_key_for, order_payload

pytest_plugins = ("tests.support.redis_server",)

# Mid-window, so a test never crosses into the next one.
NOW = 1_800_000_000.0 + 1800
WINDOW = 3600
LIMITS = {
    "reads": {"key": 3, "ip": 100},
    "writes": {"key": 100, "ip": 100},
    "checkout": {"key": 2, "ip": 100},
}


@pytest.fixture
def limited(redis_server, monkeypatch):
    """Rate limits on, counted in this test's own redis-server."""
    monkeypatch.setattr("access.ratelimit.clock", lambda: NOW)
    cache = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_server.url,
    }
    with override_settings(
        CACHES={"default": cache},
        RATE_LIMIT_ENABLED=True,
        RATE_LIMIT_WINDOW_SECONDS=WINDOW,
        RATE_LIMITS=LIMITS,
    ):
        yield redis_server


def get(client, ip="10.0.0.1"):
    return client.get("/api/v1/products/", REMOTE_ADDR=ip)


def checkout(client, key):
    return client.post(
        "/api/v1/orders/",
        order_payload([]),
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
        REMOTE_ADDR="10.0.0.1",
    )


@pytest.mark.django_db
def test_reads_beyond_the_key_quota_get_429_with_the_draft_headers(limited, customer_client):
    # when
    answers = [get(customer_client) for _ in range(4)]

    # then
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[0]["RateLimit-Policy"] == '"reads-key";q=3;w=3600, "reads-ip";q=100;w=3600'
    assert answers[0]["RateLimit"] == '"reads-key";r=2;t=1800, "reads-ip";r=99;t=1800'
    assert answers[2]["RateLimit"] == '"reads-key";r=0;t=1800, "reads-ip";r=97;t=1800'
    refused = answers[3]
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "throttled"
    assert refused["Retry-After"] == "1800"
    assert refused["RateLimit"] == '"reads-key";r=0;t=1800, "reads-ip";r=96;t=1800'


@pytest.mark.django_db
def test_checkout_is_counted_apart_from_reads(limited, customer_client):
    # given the reads are used up
    for _ in range(3):
        get(customer_client)
    assert get(customer_client).status_code == 429

    # then checkout still answers, until its own quota is used up
    statuses = [checkout(customer_client, f"k{n}").status_code for n in range(3)]
    assert statuses == [400, 400, 429]  # an empty order: refused, but counted
    # and a used-up checkout quota leaves other writes alone
    cancel = customer_client.post(
        "/api/v1/orders/00000000-0000-4000-8000-000000000000/cancel/",
        {},
        format="json",
        HTTP_IDEMPOTENCY_KEY="c",
        REMOTE_ADDR="10.0.0.1",
    )
    assert cancel.status_code == 404


@pytest.mark.django_db
def test_each_key_has_its_own_quota(limited, customer_client, other_customer_client):
    for _ in range(3):
        get(customer_client)

    assert get(customer_client).status_code == 429
    assert get(other_customer_client).status_code == 200


@pytest.mark.django_db
def test_each_ip_has_a_quota_over_all_keys_and_anonymous_calls(limited, customer, settings):
    settings.RATE_LIMITS = {**LIMITS, "reads": {"key": 100, "ip": 3}}
    clients = []
    for _ in range(2):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(customer)}")
        clients.append(client)

    # when two keys and an anonymous caller share one address
    statuses = [get(clients[0]).status_code, get(clients[1]).status_code]
    statuses.append(get(APIClient()).status_code)  # 401, but counted
    statuses.append(get(clients[1]).status_code)

    # then the fourth request is one too many; another address is not affected
    assert statuses == [200, 200, 401, 429]
    assert get(clients[0], ip="10.0.0.2").status_code == 200


@pytest.mark.django_db
def test_signed_callbacks_are_not_limited(limited, anonymous_client):
    answers = [
        anonymous_client.post("/api/v1/fulfilment/callbacks/", {}, format="json") for _ in range(5)
    ]

    assert {answer.status_code for answer in answers} == {401}
    assert "RateLimit" not in answers[0]


@pytest.mark.django_db
def test_requests_go_through_when_the_cache_is_down(limited, customer_client):
    limited.stop()

    answer = get(customer_client)

    assert answer.status_code == 200
    assert "RateLimit" not in answer


@pytest.mark.django_db
def test_the_tests_default_settings_do_not_limit(customer_client, settings):
    assert settings.RATE_LIMIT_ENABLED is False
    answers = [get(customer_client) for _ in range(5)]

    assert {answer.status_code for answer in answers} == {200}
    assert "RateLimit" not in answers[0]
