"""Conditional GETs and the cached product list, through real HTTP (Django's live
server) with real API keys: a matching If-None-Match is answered 304 only to a caller
who may read the resource, a changed order gets a new ETag, and the cached product list
is never older than PRODUCT_LIST_CACHE_SECONDS."""

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.cache import caches

from core.actors import Actor
from flows.cancel import order_cancel
from inventory.api.product_list import CACHE_KEY
from inventory.services import stock_adjust
from tests.conftest import api_key_for
from tests.factories import ProductFactory, StaffFactory, UserFactory
from tests.perf.test_query_budgets import place, products


def get(server: Any, path: str, key: str | None, **headers: str) -> tuple[int, Any, bytes]:
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        sent = {"Accept": "application/json", **headers}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        conn.request("GET", path, headers=sent)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


@pytest.fixture
def empty_product_cache() -> Any:
    caches["default"].delete(CACHE_KEY)
    yield
    caches["default"].delete(CACHE_KEY)


@pytest.mark.django_db(transaction=True)
def test_order_detail_answers_304_to_its_reader_only_and_a_changed_order_gets_a_new_etag(
    live_server,
):
    # Given a customer's order, read once
    customer, stranger = UserFactory(), UserFactory()
    order = place(customer, products(2), lines=2)
    key, stranger_key = api_key_for(customer), api_key_for(stranger)
    path = f"/api/v1/orders/{order.pk}/"
    status, headers, body = get(live_server, path, key)
    assert status == 200
    etag = headers["ETag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert headers["Cache-Control"] == "private, no-cache"
    assert json.loads(body)["id"] == str(order.pk)

    # When the same customer sends it back, Then 304 with the same tag and no body
    status, headers, body = get(live_server, path, key, **{"If-None-Match": etag})
    assert (status, headers["ETag"], body) == (304, etag, b"")
    # (in a list, and as a weak tag, it matches too)
    status, _, _ = get(live_server, path, key, **{"If-None-Match": f'"x", W/{etag}'})
    assert status == 304

    # And a stranger or no key gets no 304: the tag goes through authorization
    assert get(live_server, path, stranger_key, **{"If-None-Match": etag})[0] == 404
    assert get(live_server, path, None, **{"If-None-Match": etag})[0] == 401
    # (staff read every order: the same tag answers them 304 too)
    staff_key = api_key_for(StaffFactory())
    assert get(live_server, path, staff_key, **{"If-None-Match": etag})[0] == 304

    # When the order changes, Then the old tag no longer matches and the new one does
    order_cancel(order_id=order.pk, actor=Actor(user=customer), reason="changed my mind")
    status, headers, body = get(live_server, path, key, **{"If-None-Match": etag})
    assert status == 200
    assert json.loads(body)["status"] == "cancelled"
    assert headers["ETag"] != etag
    assert get(live_server, path, key, **{"If-None-Match": headers["ETag"]})[0] == 304


@pytest.mark.django_db(transaction=True)
def test_product_list_answers_304_on_a_matching_etag_and_a_new_tag_after_a_change(
    live_server, empty_product_cache
):
    # Given a catalogue (the list is not cached: PRODUCT_LIST_CACHE_SECONDS is 0)
    catalogue = products(2)
    key = api_key_for(UserFactory())
    status, headers, body = get(live_server, "/api/v1/products/", key)
    assert status == 200
    assert len(json.loads(body)) == 2
    etag = headers["ETag"]
    assert headers["Cache-Control"] == "no-cache"

    status, headers, body = get(live_server, "/api/v1/products/", key, **{"If-None-Match": etag})
    assert (status, headers["ETag"], body) == (304, etag, b"")
    assert get(live_server, "/api/v1/products/", None, **{"If-None-Match": etag})[0] == 401

    # When stock changes, Then the list is sent again with a new tag
    stock_adjust(
        sku=catalogue[0].sku,
        warehouse_code=catalogue[0].stock_items.get().warehouse.code,
        quantity=-5,
        reason="damaged",
        actor=Actor.system(),
    )
    status, headers, body = get(live_server, "/api/v1/products/", key, **{"If-None-Match": etag})
    assert status == 200
    assert headers["ETag"] != etag


@pytest.mark.django_db(transaction=True)
def test_cached_product_list_is_never_older_than_the_bound(
    live_server, settings, empty_product_cache
):
    # Given the list cached for at most 1 second
    settings.PRODUCT_LIST_CACHE_SECONDS = 1
    product = products(1)[0]
    warehouse = product.stock_items.get().warehouse.code
    key = api_key_for(UserFactory())

    def available() -> int:
        status, _, body = get(live_server, "/api/v1/products/", key)
        assert status == 200
        return int(json.loads(body)[0]["available"])

    assert available() == 1000
    stored_by = time.monotonic()

    # When stock changes, Then the cached list may still show the old figure, but never
    # once the bound has passed since it was stored
    stock_adjust(
        sku=product.sku,
        warehouse_code=warehouse,
        quantity=-10,
        reason="count",
        actor=Actor.system(),
    )
    seen = available()
    assert seen == 1000 or time.monotonic() - stored_by >= 1  # cached (the lever works)
    time.sleep(max(0.0, stored_by + 1.05 - time.monotonic()))
    assert available() == 990


@pytest.mark.django_db
def test_the_product_list_renders_as_its_serializer_declares():
    from inventory import selectors
    from inventory.api.product_list import product_list_render
    from inventory.api.serializers import ProductOutputSerializer

    # Given products with and without stock, and one inactive
    stocked = products(3)
    ProductFactory(sku="EMPTY-1")
    ProductFactory(sku="GONE-1", is_active=False)

    # Then the direct rendering equals DRF's, row for row
    declared = [
        dict(row) for row in ProductOutputSerializer(selectors.product_list(), many=True).data
    ]
    rendered = product_list_render().products
    assert rendered == declared
    assert [row["sku"] for row in rendered] == sorted([p.sku for p in stocked] + ["EMPTY-1"])
    assert {row["available"] for row in rendered} == {1000, 0}
