"""Order edits over HTTP, on real PostgreSQL, paying at the fake Stripe server."""

import pytest

from orders.models import Order, OrderEdit
from payments.models import Payment
from tests.conftest import new_idempotency_key, order_payload, run_concurrently, token_client
from tests.edits.conftest import (
    FR_ADDRESS,
    PRICE,
    available,
    commit,
    held,
    place,
    propose,
)
from tests.factories import StaffFactory, UserFactory
from tests.payments.conftest import GOOD_CARD, order_action, provider_totals
from tests.pricing.conftest import DE_ADDRESS

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy", "tests.support.smtp")


def test_quantity_increase_on_a_pending_order_reprices_and_reserves(rates, widget, customer_client):
    order_id = place(customer_client, [(widget.sku, 2)])
    preview = propose(customer_client, order_id, lines=[(widget.sku, 5)])
    assert preview.status_code == 201, preview.json()
    body = preview.json()
    # 5 x 10.00 + 4.95 shipping, 19% on both: 9.50 + 0.94.
    assert (body["subtotal"], body["shipping"], body["tax"]) == (5000, 495, 950 + 94)
    assert body["total"] == 5000 + 495 + 1044
    assert body["line_taxes"] == {widget.sku: 950}
    assert body["payment_action"] == "none"
    # The preview changes nothing.
    assert held(widget) == 2
    assert Order.objects.get(pk=order_id).total_amount == 2000 + 495 + 380 + 94

    response = commit(customer_client, order_id, body["id"])
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "committed"
    assert held(widget) == 5
    assert available(widget) == 5
    order = Order.objects.get(pk=order_id)
    assert (order.subtotal_amount, order.tax_amount, order.total_amount) == (5000, 1044, 6539)
    line = order.lines.get()
    assert (line.quantity, line.line_total, line.tax_amount) == (5, 5000, 950)
    assert order.events.filter(type="order.edited").count() == 1
    detail = customer_client.get(f"/api/v1/orders/{order_id}/").json()
    assert detail["total"] == 6539


def test_removing_a_line_releases_its_stock(rates, widget, gadget, customer_client):
    order_id = place(customer_client, [(widget.sku, 2), (gadget.sku, 3)])
    assert (held(widget), held(gadget)) == (2, 3)
    edit = propose(customer_client, order_id, lines=[(gadget.sku, 0)]).json()
    assert commit(customer_client, order_id, edit["id"]).status_code == 200
    assert (held(widget), held(gadget)) == (2, 0)
    assert available(gadget) == 5
    order = Order.objects.get(pk=order_id)
    assert order.subtotal_amount == 2000
    assert order.lines.get(sku=gadget.sku).quantity == 0


def test_adding_a_line_and_decreasing_another(rates, widget, gadget, customer_client):
    order_id = place(customer_client, [(widget.sku, 4)])
    edit = propose(customer_client, order_id, lines=[(widget.sku, 1), (gadget.sku, 2)]).json()
    assert edit["subtotal"] == 1000 + 4000
    assert commit(customer_client, order_id, edit["id"]).status_code == 200
    assert (held(widget), held(gadget)) == (1, 2)
    assert (available(widget), available(gadget)) == (9, 3)


def test_address_change_reprices_shipping_and_tax(rates, widget, customer_client):
    order_id = place(customer_client, [(widget.sku, 1)])
    edit = propose(customer_client, order_id, shipping_address=FR_ADDRESS).json()
    # FR: 7.00 shipping, 20% on 10.00 and on 7.00.
    assert (edit["shipping"], edit["tax"], edit["total"]) == (700, 200 + 140, 1000 + 700 + 340)
    assert commit(customer_client, order_id, edit["id"]).status_code == 200
    order = Order.objects.get(pk=order_id)
    assert order.shipping_address["country"] == "FR"
    assert (order.shipping_amount, order.total_amount) == (700, 2040)
    assert held(widget) == 1


def test_an_edit_that_cannot_be_reserved_changes_nothing(rates, widget, gadget, customer_client):
    order_id = place(customer_client, [(widget.sku, 2), (gadget.sku, 1)])
    before = Order.objects.get(pk=order_id).total_amount
    # The gadget shrinks (its units are released), the widget asks for more than exist.
    edit = propose(customer_client, order_id, lines=[(widget.sku, 11), (gadget.sku, 0)]).json()
    response = commit(customer_client, order_id, edit["id"])
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "insufficient_stock"
    assert (held(widget), held(gadget)) == (2, 1)
    order = Order.objects.get(pk=order_id)
    assert order.total_amount == before
    assert {line.sku: line.quantity for line in order.lines.all()} == {
        widget.sku: 2,
        gadget.sku: 1,
    }
    assert OrderEdit.objects.get(pk=edit["id"]).status == "proposed"


def test_stale_preview_is_refused(rates, widget, customer_client):
    order_id = place(customer_client, [(widget.sku, 2)])
    first = propose(customer_client, order_id, lines=[(widget.sku, 3)]).json()
    second = propose(customer_client, order_id, lines=[(widget.sku, 4)]).json()
    assert commit(customer_client, order_id, first["id"]).status_code == 200
    response = commit(customer_client, order_id, second["id"])
    assert response.status_code == 409
    assert response.json()["code"] == "order_changed"
    assert held(widget) == 3


def test_double_commit_acts_once(rates, widget, customer_client):
    order_id = place(customer_client, [(widget.sku, 2)])
    edit = propose(customer_client, order_id, lines=[(widget.sku, 4)]).json()
    key = new_idempotency_key()
    first = commit(customer_client, order_id, edit["id"], key=key)
    again = commit(customer_client, order_id, edit["id"], key=key)
    other_key = commit(customer_client, order_id, edit["id"])
    assert first.status_code == again.status_code == other_key.status_code == 200
    assert first.json() == again.json()
    assert held(widget) == 4
    assert Order.objects.get(pk=order_id).events.filter(type="order.edited").count() == 1


def test_edits_of_routed_or_shipped_orders_are_refused(
    rates, provider, widget, customer_client, staff_client
):
    order_id = place(customer_client, [(widget.sku, 1)], card=GOOD_CARD)
    assert order_action(staff_client, order_id, "ship").status_code == 200
    response = propose(customer_client, order_id, lines=[(widget.sku, 2)])
    assert response.status_code == 409
    assert response.json()["code"] == "order_not_editable"


def test_a_preview_is_refused_once_the_order_is_cancelled(rates, widget, customer_client):
    order_id = place(customer_client, [(widget.sku, 1)])
    edit = propose(customer_client, order_id, lines=[(widget.sku, 2)]).json()
    assert order_action(customer_client, order_id, "cancel").status_code == 200
    response = commit(customer_client, order_id, edit["id"])
    assert response.status_code == 409
    assert response.json()["code"] == "order_not_editable"


def test_another_customer_cannot_see_or_edit(rates, widget, customer_client):
    order_id = place(customer_client, [(widget.sku, 1)])
    edit = propose(customer_client, order_id, lines=[(widget.sku, 2)]).json()
    stranger = token_client(UserFactory())
    assert propose(stranger, order_id, lines=[(widget.sku, 2)]).status_code == 404
    assert stranger.get(f"/api/v1/orders/{order_id}/edits/{edit['id']}/").status_code == 404
    assert commit(stranger, order_id, edit["id"]).status_code == 404
    support = token_client(StaffFactory())
    assert support.get(f"/api/v1/orders/{order_id}/edits/{edit['id']}/").status_code == 200


# Confirmed (authorized) orders.


def test_decrease_on_a_confirmed_order_captures_the_new_total(
    rates, provider, fake_stripe, widget, customer_client, staff_client
):
    order_id = place(customer_client, [(widget.sku, 3)], card=GOOD_CARD)
    authorized = Order.objects.get(pk=order_id).total_amount
    edit = propose(customer_client, order_id, lines=[(widget.sku, 1)]).json()
    assert edit["payment_action"] == "reduce"
    assert commit(customer_client, order_id, edit["id"]).status_code == 200
    assert held(widget) == 1
    new_total = Order.objects.get(pk=order_id).total_amount
    assert new_total == 1000 + 495 + 190 + 94 < authorized
    assert order_action(staff_client, order_id, "ship").status_code == 200
    # At the provider: one intent, captured once, for the new total (the rest released).
    (intent,) = fake_stripe.payment_intents(order_id=order_id)
    # The fake takes a partial capture as a full one less an immediate refund of the rest.
    (charge,) = intent["charges"]["data"]
    assert intent["status"] == "succeeded"
    assert charge["captured"]
    assert charge["amount"] - charge["amount_refunded"] == new_total
    assert provider_totals(fake_stripe, order_id)["captures"] == 1
    assert Payment.objects.get(order_id=order_id).amount_captured == new_total


# Races.


@pytest.mark.django_db(transaction=True)
def test_an_edit_racing_a_checkout_for_the_last_unit_leaves_stock_exact(rates, stocked_product):
    product = stocked_product(quantities={"main": 3}, price=PRICE, currency="EUR")
    editor, buyer = token_client(UserFactory()), token_client(UserFactory())
    order_id = place(editor, [(product.sku, 2)])
    edit = propose(editor, order_id, lines=[(product.sku, 3)]).json()

    def checkout() -> int:
        response = buyer.post(
            "/api/v1/orders/",
            order_payload([(product.sku, 1)], shipping_address=DE_ADDRESS),
            format="json",
            HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
        )
        return int(response.status_code)

    def edit_commit() -> int:
        return int(commit(editor, order_id, edit["id"]).status_code)

    edited, checked_out = run_concurrently([edit_commit, checkout])
    assert {edited, checked_out} <= {200, 201, 409}
    assert (edited == 200) != (checked_out == 201)
    assert held(product) == 3
    assert available(product) == 0
    order = Order.objects.get(pk=order_id)
    assert order.lines.get().quantity == (3 if edited == 200 else 2)


def test_a_removed_line_can_come_back_and_a_no_op_is_refused(
    rates, widget, gadget, customer_client
):
    order_id = place(customer_client, [(widget.sku, 2), (gadget.sku, 1)])
    removed = propose(customer_client, order_id, lines=[(gadget.sku, 0)]).json()
    assert commit(customer_client, order_id, removed["id"]).status_code == 200
    # Asking again for what the order already is changes nothing.
    response = propose(customer_client, order_id, lines=[(widget.sku, 2)])
    assert response.status_code == 422
    assert response.json()["code"] == "order_edit_invalid"
    back = propose(customer_client, order_id, lines=[(gadget.sku, 2)]).json()
    assert commit(customer_client, order_id, back["id"]).status_code == 200
    assert (held(widget), held(gadget)) == (2, 2)


@pytest.mark.django_db(transaction=True)
def test_a_committed_edit_emails_the_order_as_it_is_now_once(
    rates, widget, gadget, customer_client, smtp_backend
):
    # given: an order of 2 widgets and 1 gadget
    order_id = place(customer_client, [(widget.sku, 2), (gadget.sku, 1)])
    edit = propose(customer_client, order_id, lines=[(widget.sku, 3), (gadget.sku, 0)]).json()

    # when the edit is committed, twice
    key = new_idempotency_key()
    assert commit(customer_client, order_id, edit["id"], key=key).status_code == 200
    assert commit(customer_client, order_id, edit["id"], key=key).status_code == 200

    # then one email shows the order as it is now: 3 widgets, no gadget line, new total
    order = Order.objects.get(pk=order_id)
    updated = [m for m in smtp_backend.messages if "was updated" in m.header("Subject")]
    assert len(updated) == 1
    (message,) = updated
    assert message.header("Subject") == f"Your order {order.number} was updated"
    assert f"3 x {widget.name} ({widget.sku})" in message.text
    assert gadget.sku not in message.text
    assert f"{order.total_amount // 100}.{order.total_amount % 100:02d}" in message.text
