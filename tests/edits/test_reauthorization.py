"""An edit that raises the total of a confirmed (authorized) order re-authorizes it, over
HTTP, on real PostgreSQL, at the fake Stripe server behind the fault proxy: a new
PaymentIntent for the new total, then the old one voided; or a clear error and nothing
changed, with no authorization left behind."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

import flows.edit
from core.actors import Actor
from flows.edit import reauthorization_idempotency_key
from flows.payment_outcomes import order_confirm
from flows.reconcile import payments_reconcile
from inventory.models import Product
from orders.models import Order, OrderEdit
from payments.models import Payment, PaymentOperation
from tests.conftest import new_idempotency_key, run_concurrently, token_client
from tests.edits.conftest import available, commit, held, place, propose
from tests.factories import UserFactory
from tests.payments.conftest import (
    AUTHORIZE_PATH,
    CANCEL_PATH,
    DECLINING_CARD,
    GOOD_CARD,
    THREE_D_SECURE_CARD,
    ProviderProxy,
    order_action,
    provider_totals,
)
from tests.payments.test_payments_admin import post_action
from tests.support.fake_stripe import FakeStripeServer

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")


def confirmed_order(client: APIClient, widget: Product, quantity: int = 1) -> Order:
    order_id = place(client, [(widget.sku, quantity)], card=GOOD_CARD)
    order = Order.objects.get(pk=order_id)
    assert order.status == "confirmed"
    return order


def increase(client: APIClient, order: Order, widget: Product, quantity: int) -> dict[str, Any]:
    response = propose(client, str(order.pk), lines=[(widget.sku, quantity)])
    assert response.status_code == 201, response.json()
    edit: dict[str, Any] = response.json()
    assert edit["payment_action"] == "reauthorize"
    return edit


def intents_by_status(fake_stripe: FakeStripeServer, order: Order) -> dict[str, list[int]]:
    """The order's PaymentIntents at the provider: status -> their amounts, ascending."""
    found: dict[str, list[int]] = {}
    for intent in fake_stripe.payment_intents(order_id=str(order.pk)):
        found.setdefault(intent["status"], []).append(int(intent["amount"]))
    return {status: sorted(amounts) for status, amounts in found.items()}


def authorize_requests(provider: ProviderProxy, edit_id: str) -> list[Any]:
    key = reauthorization_idempotency_key(edit_id)
    return [r for r in provider.requests if r.idempotency_key == key]


def assert_unchanged(order: Order, widget: Product, quantity: int) -> None:
    """The order, its line, its stock and its payment are as they were before the edit."""
    now = Order.objects.get(pk=order.pk)
    assert (now.status, now.total_amount) == ("confirmed", order.total_amount)
    assert now.lines.get().quantity == quantity
    assert held(widget) == quantity
    current = Payment.objects.get(order=order, is_current=True)
    assert (current.status, current.amount) == ("authorized", order.total_amount)
    assert not now.events.filter(type="order.edited").exists()


def test_an_increase_reauthorizes_then_shipping_captures_the_new_total(
    rates, provider, fake_stripe, widget, customer_client, staff_client
):
    # given a confirmed order of one widget, authorized for its total
    order = confirmed_order(customer_client, widget)
    old_payment = Payment.objects.get(order=order)
    edit = increase(customer_client, order, widget, 3)

    # when the edit is committed
    response = commit(customer_client, str(order.pk), edit["id"])

    # then the new total is authorized on a new intent and the old one is canceled
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "committed"
    new_total = edit["total"]
    assert new_total > order.total_amount
    assert intents_by_status(fake_stripe, order) == {
        "canceled": [order.total_amount],
        "requires_capture": [new_total],
    }
    (sent,) = authorize_requests(provider, edit["id"])
    assert sent.form["amount"] == str(new_total)
    old_payment.refresh_from_db()
    assert (old_payment.status, old_payment.is_current) == ("voided", False)
    new_payment = Payment.objects.get(order=order, is_current=True)
    assert (new_payment.status, new_payment.amount) == ("authorized", new_total)
    assert new_payment.order_edit_id is not None
    assert str(new_payment.order_edit_id) == edit["id"]
    assert held(widget) == 3
    edited = Order.objects.get(pk=order.pk)
    assert edited.total_amount == new_total
    # and the log tells it: the new authorization, the edit, the old one released
    types = list(edited.events.order_by("sequence").values_list("type", flat=True))
    assert types[-3:] == ["payment.authorized", "order.edited", "payment.voided"]
    change = edited.events.get(type="order.edited").data["change"]
    assert change["payment_action"] == "reauthorize"
    assert change["payment"] == {
        "payment_id": new_payment.pk,
        "amount": new_total,
        "replaced_payment_id": old_payment.pk,
    }

    # when the order ships, the new payment is captured, exactly the new total
    assert order_action(staff_client, order.pk, "ship").status_code == 200
    totals = provider_totals(fake_stripe, order.pk)
    assert (totals["captures"], totals["captured"]) == (1, new_total)
    new_payment.refresh_from_db()
    assert (new_payment.status, new_payment.amount_captured) == ("captured", new_total)
    assert Payment.objects.get(pk=old_payment.pk).status == "voided"

    # and a retried commit acts no more
    again = commit(customer_client, str(order.pk), edit["id"])
    assert again.status_code == 200
    assert len(fake_stripe.payment_intents(order_id=str(order.pk))) == 2

    # and a refund is taken from the captured (new) payment
    refund = order_action(staff_client, order.pk, "refund", {"amount": 500})
    assert refund.status_code == 200, refund.json()
    new_payment.refresh_from_db()
    assert new_payment.amount_refunded == 500
    assert provider_totals(fake_stripe, order.pk)["refunded"] == 500


def test_a_cancel_after_a_reauthorization_voids_the_new_authorization(
    rates, provider, fake_stripe, widget, customer_client
):
    order = confirmed_order(customer_client, widget)
    edit = increase(customer_client, order, widget, 2)
    assert commit(customer_client, str(order.pk), edit["id"]).status_code == 200

    assert order_action(customer_client, order.pk, "cancel").status_code == 200

    assert set(Payment.objects.filter(order=order).values_list("status", flat=True)) == {"voided"}
    assert intents_by_status(fake_stripe, order) == {
        "canceled": [order.total_amount, edit["total"]]
    }
    assert held(widget) == 0


def test_a_declined_card_fails_the_edit_and_changes_nothing(
    rates, provider, fake_stripe, widget, customer_client
):
    order = confirmed_order(customer_client, widget)
    edit = increase(customer_client, order, widget, 2)

    response = commit(customer_client, str(order.pk), edit["id"], payment_method=DECLINING_CARD)

    assert response.status_code == 402, response.json()
    problem = response.json()
    assert (problem["code"], problem["decline_code"]) == ("payment_declined", "card_declined")
    assert_unchanged(order, widget, 1)
    assert OrderEdit.objects.get(pk=edit["id"]).status == "failed"
    declined = Payment.objects.get(order=order, is_current=False)
    assert declined.status == "failed"
    # At the provider the old authorization is all that is held.
    assert provider_totals(fake_stripe, order.pk)["authorized"] == 1
    assert intents_by_status(fake_stripe, order).get("requires_capture") == [order.total_amount]
    # The same edit committed again is refused: a new preview pays with another card.
    again = commit(customer_client, str(order.pk), edit["id"], payment_method=GOOD_CARD)
    assert again.status_code == 409
    assert again.json()["code"] == "order_changed"
    assert len(authorize_requests(provider, edit["id"])) == 1


def test_a_card_asking_for_3d_secure_fails_the_edit_and_releases_its_intent(
    rates, provider, fake_stripe, widget, customer_client
):
    order = confirmed_order(customer_client, widget)
    edit = increase(customer_client, order, widget, 2)
    card = fake_stripe.create_card(THREE_D_SECURE_CARD)

    response = commit(customer_client, str(order.pk), edit["id"], payment_method=card)

    assert response.status_code == 402, response.json()
    problem = response.json()
    assert (problem["code"], problem["decline_code"]) == (
        "payment_declined",
        "authentication_required",
    )
    assert_unchanged(order, widget, 1)
    assert Payment.objects.get(order=order, is_current=False).status == "voided"
    assert intents_by_status(fake_stripe, order) == {
        "requires_capture": [order.total_amount],
        "canceled": [edit["total"]],
    }


def test_an_increase_whose_stock_is_gone_voids_the_new_authorization(
    rates, provider, fake_stripe, widget, customer_client
):
    # given a confirmed order of one widget and an edit for two, priced
    order = confirmed_order(customer_client, widget)
    edit = increase(customer_client, order, widget, 2)
    # when another customer buys every widget left before the edit is committed
    rival = token_client(UserFactory())
    place(rival, [(widget.sku, available(widget))])
    assert available(widget) == 0
    response = commit(customer_client, str(order.pk), edit["id"])

    # then the edit fails on stock, nothing changed, and the authorization it took is voided
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "insufficient_stock"
    now = Order.objects.get(pk=order.pk)
    assert (now.total_amount, now.lines.get().quantity) == (order.total_amount, 1)
    assert held(widget) == 10
    assert OrderEdit.objects.get(pk=edit["id"]).status == "failed"
    current = Payment.objects.get(order=order, is_current=True)
    assert (current.status, current.amount) == ("authorized", order.total_amount)
    taken = Payment.objects.get(order=order, is_current=False)
    assert taken.status == "voided"
    assert intents_by_status(fake_stripe, order) == {
        "requires_capture": [order.total_amount],
        "canceled": [edit["total"]],
    }
    # voided once: one void operation, one cancel at the provider
    assert taken.operations.filter(kind="void").count() == 1
    cancels = [
        r for r in provider.requests if r.path.endswith(f"{taken.provider_payment_id}/cancel")
    ]
    assert len(cancels) == 1
    types = list(now.events.order_by("sequence").values_list("type", flat=True))
    assert types[-2:] == ["payment.authorized", "payment.voided"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_commits_of_one_edit_make_one_authorization(
    rates, provider, fake_stripe, widget
):
    client = token_client(UserFactory())
    order = confirmed_order(client, widget)
    edit = increase(client, order, widget, 2)
    # The provider is slow, so the second commit arrives while the first is in flight.
    provider.set_fault("latency", seconds=1.0, times=1, path=AUTHORIZE_PATH)
    key = new_idempotency_key()

    def commit_with(idempotency_key: str) -> int:
        return int(commit(client, str(order.pk), edit["id"], key=idempotency_key).status_code)

    statuses = run_concurrently(
        [
            lambda: commit_with(key),
            lambda: commit_with(key),
            lambda: commit_with(new_idempotency_key()),
        ]
    )
    assert all(isinstance(s, int) for s in statuses), statuses
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    # Whatever each caller was told, a commit now answers the committed edit.
    assert commit(client, str(order.pk), edit["id"]).status_code == 200
    assert OrderEdit.objects.get(pk=edit["id"]).status == "committed"
    assert len(authorize_requests(provider, edit["id"])) == 1
    assert Payment.objects.filter(order=order).count() == 2
    assert intents_by_status(fake_stripe, order) == {
        "canceled": [order.total_amount],
        "requires_capture": [edit["total"]],
    }
    assert held(widget) == 2


def test_a_commit_that_died_after_the_provider_answered_is_finished_later(
    rates, provider, fake_stripe, widget, customer_client, monkeypatch
):
    # given the recording step fails once, after the provider authorized
    order = confirmed_order(customer_client, widget)
    edit = increase(customer_client, order, widget, 2)
    record_once = flows.edit._reauthorization_record_once
    calls = {"n": 0}

    def dies_once(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("process died between the provider call and the recording")
        return record_once(**kwargs)

    monkeypatch.setattr(flows.edit, "_reauthorization_record_once", dies_once)
    key = new_idempotency_key()
    died = commit(customer_client, str(order.pk), edit["id"], key=key)
    assert died.status_code == 500
    # the order is untouched; the provider holds the new authorization, its operation pending
    assert_unchanged(order, widget, 1)
    operation = PaymentOperation.objects.get(payment__order_edit_id=edit["id"])
    assert operation.status == "pending"
    # a commit meanwhile is told the re-authorization is in flight
    in_flight = commit(customer_client, str(order.pk), edit["id"], key=key)
    assert in_flight.status_code == 409
    assert in_flight.json()["code"] == "payment_operation_in_progress"

    # when the reconciler reads the intent back, and the commit is retried
    payments_reconcile()
    operation.refresh_from_db()
    assert operation.status == "succeeded"
    response = commit(customer_client, str(order.pk), edit["id"], key=key)

    # then the edit is applied with that one authorization, and the old one voided
    assert response.status_code == 200, response.json()
    assert len(authorize_requests(provider, edit["id"])) == 1
    assert intents_by_status(fake_stripe, order) == {
        "canceled": [order.total_amount],
        "requires_capture": [edit["total"]],
    }
    assert Order.objects.get(pk=order.pk).total_amount == edit["total"]
    assert held(widget) == 2


def test_a_lost_answer_is_resent_with_the_same_key(
    rates, provider, fake_stripe, widget, customer_client
):
    order = confirmed_order(customer_client, widget)
    edit = increase(customer_client, order, widget, 2)
    # The provider authorizes, but its answer never arrives.
    provider.set_fault("drop_response", times=1, path=AUTHORIZE_PATH)
    lost = commit(customer_client, str(order.pk), edit["id"])
    assert lost.status_code == 503, lost.json()
    assert lost.json()["code"] == "payment_provider_unavailable"
    assert_unchanged(order, widget, 1)
    assert OrderEdit.objects.get(pk=edit["id"]).status == "proposed"

    retried = commit(customer_client, str(order.pk), edit["id"])

    assert retried.status_code == 200, retried.json()
    sent = authorize_requests(provider, edit["id"])
    assert len(sent) == 2
    assert sent[1].replayed
    assert intents_by_status(fake_stripe, order) == {
        "canceled": [order.total_amount],
        "requires_capture": [edit["total"]],
    }


def test_an_authorization_no_commit_finished_is_released_by_the_reconciler(
    rates, provider, fake_stripe, widget, customer_client, monkeypatch
):
    order = confirmed_order(customer_client, widget)
    edit = increase(customer_client, order, widget, 2)

    def dies(**kwargs: Any) -> Any:
        raise RuntimeError("process died between the provider call and the recording")

    monkeypatch.setattr(flows.edit, "_reauthorization_record_once", dies)
    assert commit(customer_client, str(order.pk), edit["id"]).status_code == 500
    monkeypatch.undo()
    # Recorded by the reconciler, kept while a commit may still finish the edit ...
    payments_reconcile()
    taken = Payment.objects.get(order_edit_id=edit["id"])
    assert (taken.status, taken.is_current) == ("authorized", False)
    # ... and released once the hold ran out: the edit fails, nothing else changed.
    report = payments_reconcile(now=timezone.now() + timedelta(hours=1))
    assert report.voided == 1
    taken.refresh_from_db()
    assert taken.status == "voided"
    assert OrderEdit.objects.get(pk=edit["id"]).status == "failed"
    assert_unchanged(order, widget, 1)
    assert intents_by_status(fake_stripe, order) == {
        "requires_capture": [order.total_amount],
        "canceled": [edit["total"]],
    }
    refused = commit(customer_client, str(order.pk), edit["id"])
    assert refused.status_code == 409
    assert refused.json()["code"] == "order_changed"


def test_an_order_confirmed_without_a_payment_needs_a_payment_method(
    rates, provider, fake_stripe, widget, customer_client
):
    # given an order confirmed by staff, paid outside oms
    order_id = place(customer_client, [(widget.sku, 1)])
    order_confirm(order_id=order_id, actor=Actor.system(), reason="paid by bank transfer")
    order = Order.objects.get(pk=order_id)
    edit = increase(customer_client, order, widget, 2)

    refused = commit(customer_client, order_id, edit["id"])
    assert refused.status_code == 409
    assert refused.json()["code"] == "order_edit_needs_reauthorization"
    assert not Payment.objects.filter(order=order).exists()

    response = commit(customer_client, order_id, edit["id"], payment_method=GOOD_CARD)
    assert response.status_code == 200, response.json()
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.is_current, payment.amount) == (
        "authorized",
        True,
        edit["total"],
    )
    assert intents_by_status(fake_stripe, order) == {"requires_capture": [edit["total"]]}


def test_an_old_authorization_whose_void_failed_is_voided_later_once(
    rates, provider, fake_stripe, widget, customer_client, admin_client
):
    # given the provider refuses to cancel the old authorization when the edit commits
    order = confirmed_order(customer_client, widget)
    old_payment = Payment.objects.get(order=order)
    edit = increase(customer_client, order, widget, 2)
    provider.set_fault("error", status=500, path=CANCEL_PATH)
    response = commit(customer_client, str(order.pk), edit["id"])

    # then the edit is committed all the same; the old one is no longer the order's
    assert response.status_code == 200, response.json()
    old_payment.refresh_from_db()
    assert (old_payment.status, old_payment.is_current) == ("authorized", False)
    assert provider_totals(fake_stripe, order.pk)["authorized"] == 2
    # and staff void it from the payments admin (as the outbox message does), once
    provider.clear()
    (message,) = post_action(
        admin_client, "payments_payment", "void_authorization", [old_payment.pk]
    )
    assert message.endswith("authorization voided.")
    (again,) = post_action(admin_client, "payments_payment", "void_authorization", [old_payment.pk])
    assert again.endswith("no authorization to void (voided).")
    assert intents_by_status(fake_stripe, order) == {
        "canceled": [order.total_amount],
        "requires_capture": [edit["total"]],
    }
    assert len(provider.sent(CANCEL_PATH)) == 1


@pytest.mark.django_db(transaction=True)
def test_an_order_cancelled_while_the_provider_authorizes_voids_the_new_authorization(
    rates, provider, fake_stripe, widget
):
    client = token_client(UserFactory())
    order = confirmed_order(client, widget)
    edit = increase(client, order, widget, 2)
    # The provider authorizes the new total, but its answer is held ...
    hold = provider.hold_response(path=AUTHORIZE_PATH)
    results: list[Any] = []

    def commit_in_thread() -> None:
        try:
            results.append(commit(client, str(order.pk), edit["id"]))
        finally:
            connections.close_all()

    committing = threading.Thread(target=commit_in_thread)
    committing.start()
    assert hold.answered.wait(10)
    # ... while the customer cancels the order.
    assert order_action(client, order.pk, "cancel").status_code == 200
    hold.release.set()
    committing.join(30)

    (response,) = results
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "order_not_editable"
    assert Order.objects.get(pk=order.pk).status == "cancelled"
    assert OrderEdit.objects.get(pk=edit["id"]).status == "failed"
    assert set(Payment.objects.filter(order=order).values_list("status", flat=True)) == {"voided"}
    assert intents_by_status(fake_stripe, order) == {
        "canceled": sorted([order.total_amount, edit["total"]])
    }
    assert len(provider.sent(CANCEL_PATH)) == 2
    assert held(widget) == 0
