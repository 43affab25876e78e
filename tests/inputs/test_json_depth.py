"""JSON nested deeper than JSON_MAX_DEPTH is a 400 json_too_deep from the one JSON
parser, on every JSON endpoint, the signed webhook and callback included; a thousand
levels used to end in Python's recursion limit."""

import json
from typing import Any

import pytest
import stripe

from tests.conftest import new_idempotency_key, order_payload
from tests.fulfilment.conftest import (
    callback,
    event_body,
    refreshed,
)
from tests.inputs.conftest import assert_problem, stored_state
from tests.payments.conftest import WEBHOOK_SECRET, webhook_post

pytest_plugins = ("tests.support.fake_warehouse", "tests.support.fake_stripe")


def nested(depth: int) -> Any:
    """An object holding arrays `depth` levels deep in all."""
    value: Any = []
    for _ in range(depth - 2):
        value = [value]
    return {"pad": value}


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.django_db
@pytest.mark.parametrize("body", [deep_array(1000), deep_array(100_000), json.dumps(nested(33))])
def test_deep_json_at_checkout_is_refused_and_nothing_is_stored(customer_client, body):
    before = stored_state()

    response = customer_client.post(
        "/api/v1/orders/",
        body,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )

    assert_problem(response, 400, "json_too_deep")
    assert stored_state() == before


@pytest.mark.django_db
def test_json_exactly_at_the_depth_limit_is_parsed(customer_client, stocked_product):
    product = stocked_product(quantities={"main": 5})
    payload = {**order_payload([(product.sku, 1)]), **nested(32)}

    response = customer_client.post(
        "/api/v1/orders/",
        payload,
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )

    assert response.status_code == 201, response.json()


@pytest.mark.django_db
def test_the_depth_limit_is_a_setting(customer_client, settings):
    settings.JSON_MAX_DEPTH = 3

    response = customer_client.post(
        "/api/v1/orders/",
        {"a": {"b": {"c": {}}}},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )

    assert_problem(response, 400, "json_too_deep")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("staff", "/api/v1/products/"),
        ("staff", "/api/v1/warehouses/"),
        ("staff", "/api/v1/stock/adjustments/"),
    ],
)
def test_deep_json_on_staff_endpoints_is_refused(staff_client, who, path):
    before = stored_state()

    response = staff_client.post(path, deep_array(5000), content_type="application/json")

    assert_problem(response, 400, "json_too_deep")
    assert stored_state() == before


@pytest.mark.django_db
def test_a_signed_webhook_nested_too_deep_is_refused_and_not_stored(anonymous_client, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    body = (
        '{"id": "evt_deep", "type": "payment_intent.succeeded", "data": ' + deep_array(1000) + "}"
    )
    signature = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
    before = stored_state()

    response = webhook_post(anonymous_client, body, signature)

    assert_problem(response, 400, "json_too_deep")
    assert stored_state() == before


@pytest.mark.django_db
@pytest.mark.usefixtures("_fulfilment_settings")
def test_a_signed_callback_nested_too_deep_is_refused_then_a_correct_one_works(
    routed_shipment, anonymous_client
):
    code = routed_shipment.warehouse.code
    before = stored_state()

    deep = callback(anonymous_client, deep_array(1000).encode(), warehouse_code=code)
    too_deep = callback(
        anonymous_client,
        {**event_body(routed_shipment, "shipped"), **nested(33)},
        warehouse_code=code,
    )

    assert_problem(deep, 400, "json_too_deep")
    assert_problem(too_deep, 400, "json_too_deep")
    assert stored_state() == before

    accepted = callback(
        anonymous_client, event_body(routed_shipment, "shipped"), warehouse_code=code
    )

    assert accepted.status_code == 200, accepted.content
    assert refreshed(routed_shipment) == ("shipped", "routed")
