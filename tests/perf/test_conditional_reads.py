"""Conditional GETs and the cached product list, through real HTTP (Django's live
server) with real API keys: a matching If-None-Match is answered 304 only to a caller
who may read the resource, a changed order or first page of orders gets a new ETag
(whoever changed it, however, and in whatever order concurrent writers commit), and
the cached product list is never older than PRODUCT_LIST_CACHE_SECONDS."""

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connections
from django.urls import resolve
from prometheus_client import REGISTRY

from core.actors import Actor
from flows.cancel import order_cancel
from flows.edit import order_edit_commit, order_edit_propose
from inventory.api.product_list import (
    CACHE_KEY,
    ProductList,
    product_list_current,
    product_list_forget,
)
from inventory.services import stock_adjust
from orders.models import Order
from payments.models import Payment
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
    product_list_forget()
    yield
    product_list_forget()


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

    # When the same customer sends it back, Then 304 with the same tag and no body,
    # still through the request id and metrics middleware (a 304 skips only rendering)
    answered_304 = {"route": resolve(path).view_name, "method": "GET", "status": "304"}
    counted_before = REGISTRY.get_sample_value("oms_http_requests_total", answered_304) or 0
    status, headers, body = get(
        live_server, path, key, **{"If-None-Match": etag, "X-Request-ID": "probe-304"}
    )
    assert (status, headers["ETag"], body) == (304, etag, b"")
    assert headers["X-Request-ID"] == "probe-304"
    assert headers["Cache-Control"] == "private, no-cache"
    assert REGISTRY.get_sample_value("oms_http_requests_total", answered_304) == counted_before + 1
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


def first_page(server: Any, key: str | None, etag: str = "", query: str = "") -> Any:
    """GET the first page of orders (If-None-Match: etag when given): status, ETag,
    the order ids and statuses on the page."""
    headers = {"If-None-Match": etag} if etag else {}
    status, sent, body = get(server, f"/api/v1/orders/{query}", key, **headers)
    results = json.loads(body)["results"] if status == 200 else []
    return status, sent.get("ETag"), [(item["id"], item["status"]) for item in results], sent


@pytest.mark.django_db(transaction=True)
def test_first_page_of_orders_answers_304_to_its_owner_only(live_server):
    # Given two customers with orders, and the first one's first page read once
    customer, other = UserFactory(), UserFactory()
    catalogue = products(2)
    mine = [place(customer, catalogue, lines=2) for _ in range(2)]
    theirs = place(other, catalogue)
    key, other_key = api_key_for(customer), api_key_for(other)
    status, etag, page, headers = first_page(live_server, key)
    assert status == 200
    assert [order_id for order_id, _ in page] == [str(order.pk) for order in reversed(mine)]
    assert etag.startswith('"')
    assert headers["Cache-Control"] == "private, no-cache"

    # When the same customer sends the tag back, Then 304 with the same tag
    status, again, page, _ = first_page(live_server, key, etag)
    assert (status, again, page) == (304, etag, [])

    # And another customer (another key) sending that tag gets their own page, not a 304
    status, their_tag, page, _ = first_page(live_server, other_key, etag)
    assert (status, page) == (200, [(str(theirs.pk), theirs.status)])
    assert their_tag != etag
    # (staff see every order: another page, another tag; no key: 401)
    staff_key = api_key_for(StaffFactory())
    status, staff_tag, page, _ = first_page(live_server, staff_key, etag)
    assert (status, len(page)) == (200, 3)
    assert staff_tag not in (etag, their_tag)
    assert first_page(live_server, None, etag)[0] == 401

    # A smaller page is another representation with its own tag; a filtered page or a
    # later one carries none and is always sent
    status, small_tag, page, _ = first_page(live_server, key, etag, "?page_size=1")
    assert (status, len(page)) == (200, 1)
    assert small_tag != etag
    assert first_page(live_server, key, small_tag, "?page_size=1")[0] == 304
    status, tag, page, _ = first_page(live_server, key, etag, "?status=pending_payment")
    assert (status, tag, len(page)) == (200, None, 2)


@pytest.mark.django_db(transaction=True)
def test_every_change_a_first_page_shows_gives_it_a_new_etag(live_server):
    # Given a customer's orders, one of them with a payment attempt
    customer = UserFactory()
    catalogue = products(2)
    older, newer = place(customer, catalogue, lines=2), place(customer, catalogue)
    payment = Payment.objects.create(
        order=newer,
        payment_method="pm_card_visa",
        amount=newer.total_amount,
        currency=newer.currency,
        status=Payment.Status.FAILED,
    )
    key = api_key_for(customer)
    tags = [first_page(live_server, key)[1]]

    def changed() -> list[Any]:
        """The page sent again (200, a new tag) for the last tag; that tag then 304s."""
        status, tag, page, _ = first_page(live_server, key, tags[-1])
        assert status == 200
        assert tag not in tags
        assert first_page(live_server, key, tag)[0] == 304
        tags.append(tag)
        return page

    # When an order is cancelled (as a worker would, outside any request), Then new tag
    actor = Actor(user=customer)
    order_cancel(order_id=older.pk, actor=actor, reason="changed my mind")
    assert changed()[1] == (str(older.pk), "cancelled")
    # When a new order is placed
    newest = place(customer, catalogue)
    assert changed()[0] == (str(newest.pk), newest.status)
    # When an edit changes a line's quantity (lines change only in an edit)
    edit = order_edit_propose(
        order_id=newer.pk, lines={catalogue[0].sku: 3}, shipping_address=None, actor=actor
    )
    order_edit_commit(order_id=newer.pk, edit_id=edit.pk, actor=actor)
    assert changed()[1] == (str(newer.pk), newer.status)
    # When a payment or an order changes by an UPDATE that leaves updated_at alone
    Payment.objects.filter(pk=payment.pk).update(decline_code="card_declined")
    changed()
    Order.objects.filter(pk=newer.pk).update(email="new@example.com")
    changed()


@pytest.mark.django_db(transaction=True)
def test_a_change_that_commits_after_a_later_one_still_changes_the_etag(live_server):
    # Given a customer's two orders
    customer = UserFactory()
    catalogue = products(1)
    older, newer = place(customer, catalogue), place(customer, catalogue)
    key = api_key_for(customer)
    other = connections.create_connection("default")
    try:
        # When one transaction changes the older order and stays open, while a later
        # change to the newer order commits and the page is read
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                "UPDATE orders_order SET email = 'late@example.com' WHERE id = %s", [older.pk]
            )
        order_cancel(order_id=newer.pk, actor=Actor(user=customer), reason="test")
        status, etag, page, _ = first_page(live_server, key)
        assert page == [(str(newer.pk), "cancelled"), (str(older.pk), older.status)]
        assert first_page(live_server, key, etag)[0] == 304
        # and the first transaction then commits (its order's updated_at is older than
        # the newer order's: a maximum of updated_at would not move)
        with other.cursor() as cursor:
            cursor.execute("COMMIT")
    finally:
        other.close()

    # Then the tag no longer matches and the page shows the change
    status, tag, page, _ = first_page(live_server, key, etag)
    assert status == 200
    assert tag != etag
    _, _, body = get(live_server, "/api/v1/orders/", key)
    assert [item["email"] for item in json.loads(body)["results"]][1] == "late@example.com"


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


@pytest.mark.django_db
def test_a_process_serves_its_copy_of_the_shared_list_until_the_entry_expires(
    settings, empty_product_cache
):
    from django.core.cache import caches

    # Given an entry another process stored in the shared cache, valid for a minute more
    settings.PRODUCT_LIST_CACHE_SECONDS = 60
    shared = caches[settings.PRODUCT_LIST_CACHE]
    other = ProductList(etag='"p-other"', products=[], expires_at=time.time() + 60)
    shared.set(CACHE_KEY, other, timeout=60)

    # When this process reads the list, Then it serves that entry, and keeps serving its
    # copy without the shared cache (here: after the entry is gone from it)
    assert product_list_current().etag == '"p-other"'
    shared.delete(CACHE_KEY)
    assert product_list_current().etag == '"p-other"'

    # And an entry past its expiry is never served, from the copy or the shared cache:
    # the list is rendered again (and stored)
    expired = ProductList(etag='"p-expired"', products=[], expires_at=time.time() - 0.01)
    product_list_forget()
    shared.set(CACHE_KEY, expired, timeout=60)
    rendered = product_list_current()
    assert rendered.etag not in ('"p-other"', '"p-expired"')
    assert shared.get(CACHE_KEY) == rendered
    assert time.time() < rendered.expires_at <= time.time() + 60
