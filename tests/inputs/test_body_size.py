"""Request bodies over REQUEST_BODY_MAX_BYTES, or of unknown length, are refused before
anything reads them: on every POST, the anonymous Stripe webhook and warehouse callback
included, in process and over real HTTP."""

import json
import time
from typing import Any

import pytest
import requests
from django.test import Client

from core.actors import Actor
from flows.place import OrderLineRequest, order_place
from tests.conftest import new_idempotency_key, order_payload, token_client
from tests.fulfilment.conftest import (
    callback,
    event_body,
    refreshed,
)
from tests.inputs.conftest import assert_problem, stored_state
from tests.payments.conftest import WEBHOOK_SECRET, signed_event
from tests.support.fake_warehouse import WAREHOUSE_SECRET

pytest_plugins = ("tests.support.fake_warehouse", "tests.support.fake_stripe")

LIMIT = 2_621_440
WEBHOOK_URL = "/api/v1/payments/stripe/webhook/"
CALLBACK_URL = "/api/v1/fulfilment/callbacks/"
UNKNOWN_INTENT = {
    "id": "pi_not_ours",
    "object": "payment_intent",
    "status": "succeeded",
    "amount": 100,
    "currency": "eur",
    "metadata": {},
}


def padded_json(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    head, tail = b'{"pad": "', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


@pytest.fixture
def order_id(customer: Any, stocked_product: Any) -> str:
    product = stocked_product(quantities={"main": 5})
    order = order_place(
        customer=customer,
        email="buyer@example.com",
        shipping_address=order_payload([])["shipping_address"],
        lines=[OrderLineRequest(product.sku, 1)],
        actor=Actor.system(),
    )
    return str(order.pk)


def every_post(order_id: str) -> list[tuple[str, str]]:
    """(who, path) for every POST endpoint of the API."""
    return [
        ("customer", "/api/v1/orders/"),
        ("customer", f"/api/v1/orders/{order_id}/pay/"),
        ("customer", f"/api/v1/orders/{order_id}/cancel/"),
        ("staff", f"/api/v1/orders/{order_id}/transitions/"),
        ("staff", f"/api/v1/orders/{order_id}/ship/"),
        ("staff", f"/api/v1/orders/{order_id}/refund/"),
        ("staff", "/api/v1/products/"),
        ("staff", "/api/v1/warehouses/"),
        ("staff", "/api/v1/stock/adjustments/"),
        ("anonymous", WEBHOOK_URL),
        ("anonymous", CALLBACK_URL),
    ]


def raw_client(who: str, customer: Any, staff: Any) -> Client:
    """Django's test client with the role's token: raw bytes, no DRF encoding."""
    user = {"customer": customer, "staff": staff}.get(who)
    if user is None:
        return Client()
    token = token_client(user)._credentials["HTTP_AUTHORIZATION"]
    return Client(HTTP_AUTHORIZATION=token)


@pytest.mark.django_db
def test_a_body_over_the_limit_is_refused_on_every_post_and_nothing_changes(
    customer, staff, order_id
):
    before = stored_state()
    body = padded_json(LIMIT + 1)

    for who, path in every_post(order_id):
        response = raw_client(who, customer, staff).post(
            path,
            body,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
            HTTP_STRIPE_SIGNATURE="t=1,v1=00",
            HTTP_X_WAREHOUSE_CODE="main",
        )

        problem = assert_problem(response, 413, "request_too_large")
        assert str(LIMIT) in problem["detail"], path
    assert stored_state() == before


@pytest.mark.django_db
def test_a_body_at_the_limit_reaches_the_view(customer_client, stocked_product):
    product = stocked_product(quantities={"main": 5})
    payload = order_payload([(product.sku, 1)])
    encoded = json.dumps(payload).encode()
    # Pad with an unknown field (ignored) up to exactly the limit.
    body = encoded[:-1] + b', "pad": "' + b"a" * 0 + b'"}'
    body = body[:-2] + b"a" * (LIMIT - len(body)) + b'"}'
    assert len(body) == LIMIT

    response = customer_client.post(
        "/api/v1/orders/",
        body,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )

    assert response.status_code == 201, response.content[:300]


@pytest.mark.django_db
def test_the_limit_is_a_setting(customer_client, settings):
    settings.REQUEST_BODY_MAX_BYTES = 100
    before = stored_state()

    response = customer_client.post(
        "/api/v1/orders/",
        padded_json(101),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )

    assert_problem(response, 413, "request_too_large")
    assert stored_state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "case"),
    [
        ({"HTTP_TRANSFER_ENCODING": "chunked"}, "chunked"),
        ({"CONTENT_LENGTH": "12abc"}, "garbled length"),
        ({"CONTENT_LENGTH": "-5"}, "negative length"),
    ],
)
def test_a_body_of_unknown_length_is_refused(customer_client, headers, case):
    before = stored_state()

    response = customer_client.generic(
        "POST",
        "/api/v1/orders/",
        b"{}",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
        **headers,
    )

    assert_problem(response, 411, "length_required")
    assert stored_state() == before


@pytest.mark.django_db(transaction=True)
def test_over_real_http_oversized_and_chunked_bodies_are_refused_then_a_real_event_works(
    live_server, settings
):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    url = f"{live_server.url}{WEBHOOK_URL}"

    oversized = requests.post(
        url,
        data=padded_json(3 * 1024 * 1024),
        headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"},
        timeout=30,
    )
    chunked = requests.post(
        url,
        data=iter([b'{"id": ', b'"evt_1"}']),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    body, signature = signed_event("payment_intent.succeeded", UNKNOWN_INTENT)
    genuine = requests.post(
        url,
        data=body.encode(),
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        timeout=30,
    )

    assert (oversized.status_code, oversized.json()["code"]) == (413, "request_too_large")
    assert oversized.headers["Content-Type"] == "application/problem+json"
    assert (chunked.status_code, chunked.json()["code"]) == (411, "length_required")
    assert chunked.headers["Content-Type"] == "application/problem+json"
    assert genuine.status_code == 200, genuine.text
    assert genuine.json() == {"received": True, "duplicate": False}


@pytest.mark.django_db
@pytest.mark.usefixtures("_fulfilment_settings")
def test_callbacks_unsigned_forged_stale_or_oversized_are_refused_then_a_correct_one_works(
    routed_shipment, anonymous_client
):
    code = routed_shipment.warehouse.code
    report = event_body(routed_shipment, "shipped")
    before = stored_state()

    refused = [
        callback(anonymous_client, report, warehouse_code=code, signature=""),
        callback(anonymous_client, report, warehouse_code=code, secret="not-the-secret"),
        callback(anonymous_client, report, warehouse_code=code, signed_at=int(time.time()) - 3600),
    ]
    oversized = callback(
        anonymous_client,
        json.dumps({**report, "pad": "a" * LIMIT}).encode(),
        warehouse_code=code,
        secret=WAREHOUSE_SECRET,
    )

    for response in refused:
        assert_problem(response, 401, "callback_signature_invalid")
    assert_problem(oversized, 413, "request_too_large")
    assert stored_state() == before
    assert refreshed(routed_shipment) == ("accepted", "routed")

    accepted = callback(anonymous_client, report, warehouse_code=code)

    assert accepted.status_code == 200, accepted.content
    assert refreshed(routed_shipment) == ("shipped", "routed")
