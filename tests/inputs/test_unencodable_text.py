"""Text that cannot be encoded (a lone UTF-16 surrogate such as "\\ud800") or that an
error message would echo: refused with a stable code, never echoed, and neither the
problem response nor the stored idempotent response can fail on any string."""

import json

import pytest

from core.actors import Actor
from core.api.renderers import JSONRenderer
from core.errors import NotFound
from core.idempotency import idempotent_execute
from core.models import IdempotencyKey
from flows.place import OrderLineRequest, order_place
from tests.conftest import order_payload
from tests.fulfilment.conftest import (
    callback,
    event_body,
    refreshed,
)
from tests.inputs.conftest import assert_problem, stored_state

pytest_plugins = ("tests.support.fake_warehouse", "tests.support.fake_stripe")

LONE_SURROGATE = "\ud800"
HOSTILE_CHOICES = ["<script>alert(1)</script>", "cancel\u0000", "x" * 5000]


@pytest.fixture
def order(customer, stocked_product):
    product = stocked_product(quantities={"main": 5})
    return order_place(
        customer=customer,
        email="buyer@example.com",
        shipping_address=order_payload([])["shipping_address"],
        lines=[OrderLineRequest(product.sku, 1)],
        actor=Actor.system(),
    )


def transition(client, order, value, key):
    # json.dumps writes the surrogate as the escape "\ud800": valid JSON syntax.
    return client.post(
        f"/api/v1/orders/{order.pk}/transitions/",
        json.dumps({"transition": value}),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


@pytest.mark.django_db
def test_a_lone_surrogate_in_a_transition_is_refused_and_a_retry_answers_the_same(
    staff_client, order
):
    before = stored_state()

    first = transition(staff_client, order, LONE_SURROGATE, "surrogate-1")
    retry = transition(staff_client, order, LONE_SURROGATE, "surrogate-1")

    for response in (first, retry):
        assert_problem(response, 400, "malformed_json")
    assert stored_state() == before


@pytest.mark.django_db
@pytest.mark.parametrize("value", HOSTILE_CHOICES)
def test_an_unknown_transition_is_a_field_error_that_names_the_choices_not_the_input(
    staff_client, order, value
):
    before = stored_state()

    response = transition(staff_client, order, value, "hostile-1")

    problem = assert_problem(response, 400, "validation_error")
    (error,) = problem["errors"]
    assert error["field"] == "transition"
    assert error["detail"].startswith("Must be one of: ")
    assert "cancel" in error["detail"]
    assert value not in response.content.decode()
    assert stored_state() == before


@pytest.mark.django_db
def test_an_unknown_status_filter_names_the_choices_not_the_input(customer_client):
    response = customer_client.get("/api/v1/orders/", {"status": "<b>bold</b>"})

    problem = assert_problem(response, 400, "validation_error")
    assert "<b>" not in response.content.decode()
    assert problem["errors"][0]["detail"].startswith("Must be one of: pending_payment")


@pytest.mark.django_db
@pytest.mark.usefixtures("_fulfilment_settings")
@pytest.mark.parametrize(
    ("event", "code"), [(LONE_SURROGATE, "malformed_json"), ("lost\u0000", "validation_error")]
)
def test_a_signed_callback_with_an_unencodable_event_is_refused_then_a_correct_one_works(
    routed_shipment, anonymous_client, event, code
):
    warehouse_code = routed_shipment.warehouse.code
    before = stored_state()

    response = callback(
        anonymous_client,
        {**event_body(routed_shipment, "shipped"), "event": event},
        warehouse_code=warehouse_code,
    )

    assert_problem(response, 400, code)
    assert "lost" not in response.content.decode()
    assert stored_state() == before
    assert refreshed(routed_shipment) == ("accepted", "routed")

    accepted = callback(
        anonymous_client, event_body(routed_shipment, "shipped"), warehouse_code=warehouse_code
    )

    assert accepted.status_code == 200, accepted.content
    assert refreshed(routed_shipment) == ("shipped", "routed")


def test_the_renderer_escapes_what_utf8_cannot_carry():
    rendered = JSONRenderer().render({"detail": f"bad {LONE_SURROGATE} and \u20ac"})

    assert rendered.isascii()
    assert json.loads(rendered) == {"detail": f"bad {LONE_SURROGATE} and \u20ac"}
    assert JSONRenderer().render({"detail": "\u20ac"}) == '{"detail":"\u20ac"}'.encode()


@pytest.mark.django_db
def test_an_idempotent_response_quoting_any_text_is_stored_and_replayed(customer):
    def operation(context):
        # An error whose detail quotes what a client sent.
        raise NotFound(f"no such thing: {LONE_SURROGATE}\u0000")

    results = []
    for _ in range(2):
        try:
            idempotent_execute(
                user=customer,
                key="quoting-key",
                method="POST",
                path="/api/v1/orders/",
                payload={},
                operation=operation,
            )
        except NotFound as error:
            results.append(("raised", error.status))
        else:
            results.append(("replayed",))

    stored = IdempotencyKey.objects.get(user=customer, key="quoting-key")
    assert stored.status == IdempotencyKey.Status.COMPLETED
    assert stored.response_status == 404
    assert stored.response_body["detail"] == "no such thing: \\ud800\\u0000"
    assert results == [("raised", 404), ("replayed",)]
