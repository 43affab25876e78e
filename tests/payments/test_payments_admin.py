"""The payments admin: attempts and provider calls on the order page, the payment list,
and the money actions (full refund, void) going through the use cases in flows."""

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from core.breakers import circuit_breakers_reset
from orders.models import Order
from payments.models import Payment
from payments.provider import payment_breaker
from tests.factories import StaffFactory
from tests.payments.conftest import (
    CANCEL_PATH,
    CAPTURE_PATH,
    GOOD_CARD,
    PRICE,
    REFUND_PATH,
    THREE_D_SECURE_CARD,
    ProviderProxy,
    assert_provider_consistent,
    order_action,
    provider_totals,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

pytestmark = pytest.mark.django_db


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def run_action(admin_client: Any, action: str, *order_ids: Any) -> list[str]:
    """Run a payments admin action on the payments of the given orders."""
    payments = Payment.objects.filter(order_id__in=order_ids).values_list("pk", flat=True)
    return post_action(admin_client, "payments_payment", action, list(payments))


def post_action(admin_client: Any, model: str, action: str, selected: list[Any]) -> list[str]:
    response = admin_client.post(
        reverse(f"admin:{model}_changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in selected], "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    return messages_of(response)


def label(order_id: Any) -> str:
    payment = Payment.objects.select_related("order").get(order_id=order_id)
    return f"{payment.order.number} ({payment.provider_payment_id})"


@pytest.fixture
def confirmed_order_id(provider, checkout, customer_client) -> str:
    response = checkout(customer_client, GOOD_CARD)
    assert response.status_code == 201, response.json()
    order_id: str = response.json()["id"]
    return order_id


@pytest.fixture
def shipped_order_id(confirmed_order_id, staff_client) -> str:
    assert order_action(staff_client, confirmed_order_id, "ship").status_code == 200
    return confirmed_order_id


def test_order_page_shows_payment_attempts_and_provider_calls(admin_client, shipped_order_id):
    payment = Payment.objects.get(order_id=shipped_order_id)

    page = admin_client.get(reverse("admin:orders_order_change", args=[shipped_order_id]))

    assert page.status_code == 200
    html = page.content.decode()
    assert payment.provider_payment_id in html
    assert "25.00 EUR" in html
    for operation in payment.operations.all():
        assert operation.idempotency_key in html
    assert "capture" in html


def test_payment_list_and_page_show_attempts_with_their_calls(admin_client, shipped_order_id):
    payment = Payment.objects.get(order_id=shipped_order_id)

    listing = admin_client.get(reverse("admin:payments_payment_changelist"))
    page = admin_client.get(reverse("admin:payments_payment_change", args=[payment.pk]))

    assert listing.status_code == 200
    assert payment.provider_payment_id in listing.content.decode()
    assert page.status_code == 200
    html = page.content.decode()
    assert "provider calls" in html.lower()
    assert payment.operations.get(kind="capture").idempotency_key in html


def test_payment_page_does_not_show_the_client_secret(
    admin_client, provider, checkout, customer_client, fake_stripe
):
    response = checkout(customer_client, fake_stripe.create_card(THREE_D_SECURE_CARD))
    payment = Payment.objects.get(order_id=response.json()["id"])
    assert payment.client_secret

    page = admin_client.get(reverse("admin:payments_payment_change", args=[payment.pk]))

    assert page.status_code == 200
    assert payment.client_secret not in page.content.decode()


def test_payments_are_read_only_in_the_admin(admin_client, confirmed_order_id):
    payment = Payment.objects.get(order_id=confirmed_order_id)

    assert admin_client.get(reverse("admin:payments_payment_add")).status_code == 403
    deleted = admin_client.post(
        reverse("admin:payments_payment_delete", args=[payment.pk]), {"post": "yes"}
    )
    assert deleted.status_code == 403
    assert Payment.objects.filter(pk=payment.pk).exists()


def test_refund_in_full_action_refunds_at_the_provider(
    admin_client, admin_user, shipped_order_id, provider: ProviderProxy, fake_stripe
):
    messages = run_action(admin_client, "refund_full", shipped_order_id)

    order = Order.objects.get(pk=shipped_order_id)
    assert messages == [f"{label(shipped_order_id)}: refunded in full, order refunded."]
    assert order.status == "refunded"
    totals = assert_provider_consistent(fake_stripe, shipped_order_id)
    assert totals["refunded"] == PRICE
    change = order.status_changes.get(transition="refund")
    assert change.actor == admin_user
    assert change.request_id


def test_refund_action_on_an_uncaptured_payment_sends_nothing(
    admin_client, confirmed_order_id, provider: ProviderProxy
):
    (message,) = run_action(admin_client, "refund_full", confirmed_order_id)

    assert message == f"{label(confirmed_order_id)}: nothing captured to refund."
    assert provider.sent(REFUND_PATH) == []


def test_refund_action_reports_domain_errors(
    admin_client, shipped_order_id, staff_client, provider: ProviderProxy
):
    # Refunded in full already through the API: the order is no longer refundable.
    assert order_action(staff_client, shipped_order_id, "refund").status_code == 200

    (message,) = run_action(admin_client, "refund_full", shipped_order_id)

    assert message == (f"{label(shipped_order_id)}: Cannot refund an order in status 'refunded'.")
    assert len(provider.sent(REFUND_PATH)) == 1


def test_refund_action_reports_an_unavailable_provider(
    admin_client, shipped_order_id, provider: ProviderProxy
):
    provider.set_fault("error", status=500, path=REFUND_PATH)

    (message,) = run_action(admin_client, "refund_full", shipped_order_id)

    assert "payment provider is unavailable" in message
    assert Order.objects.get(pk=shipped_order_id).status == "shipped"


def test_void_action_releases_what_a_failed_cancel_left_authorized(
    admin_client, confirmed_order_id, customer_client, provider: ProviderProxy, fake_stripe
):
    # Given a cancelled order whose void did not go through
    provider.set_fault("error", status=500, path=CANCEL_PATH)
    assert order_action(customer_client, confirmed_order_id, "cancel").status_code == 200
    assert provider_totals(fake_stripe, confirmed_order_id)["authorized"] == 1
    provider.clear()

    messages = run_action(admin_client, "void_authorization", confirmed_order_id)

    assert messages == [f"{label(confirmed_order_id)}: authorization voided."]
    assert Payment.objects.get(order_id=confirmed_order_id).status == "voided"
    totals = assert_provider_consistent(fake_stripe, confirmed_order_id)
    assert (totals["authorized"], totals["canceled"]) == (0, 1)


def test_void_action_refuses_an_order_that_still_uses_its_authorization(
    admin_client, confirmed_order_id, provider: ProviderProxy, fake_stripe
):
    (message,) = run_action(admin_client, "void_authorization", confirmed_order_id)

    assert message == (
        f"{label(confirmed_order_id)}: order confirmed still uses this authorization; "
        "cancel the order instead."
    )
    assert provider.sent(CANCEL_PATH) == []
    assert provider_totals(fake_stripe, confirmed_order_id)["authorized"] == 1


def test_void_action_reports_an_unconfirmed_void(
    admin_client, confirmed_order_id, customer_client, provider: ProviderProxy
):
    provider.set_fault("error", status=500, path=CANCEL_PATH)
    assert order_action(customer_client, confirmed_order_id, "cancel").status_code == 200

    (message,) = run_action(admin_client, "void_authorization", confirmed_order_id)

    assert "reconciler will retry" in message
    assert Payment.objects.get(order_id=confirmed_order_id).status == "authorized"


def test_void_action_on_a_captured_payment_does_nothing(
    admin_client, shipped_order_id, provider: ProviderProxy
):
    (message,) = run_action(admin_client, "void_authorization", shipped_order_id)

    assert message == f"{label(shipped_order_id)}: no authorization to void (captured)."
    assert provider.sent(CANCEL_PATH) == []


def test_staff_who_may_only_view_see_no_money_actions(client, confirmed_order_id):
    viewer = StaffFactory(groups=["warehouse"])  # may not refund (access.policy)
    viewer.user_permissions.add(Permission.objects.get(codename="view_payment"))
    client.force_login(viewer)

    page = client.get(reverse("admin:payments_payment_changelist"))

    assert page.status_code == 200
    assert page.context["action_form"] is None or not [
        name for name, _ in page.context["action_form"].fields["action"].choices if name
    ]
    messages = post_action(
        client,
        "payments_payment",
        "refund_full",
        list(Payment.objects.values_list("pk", flat=True)),
    )
    assert not any("refunded" in message for message in messages)


def test_ship_transition_in_the_admin_captures_the_payment(
    admin_client, confirmed_order_id, provider: ProviderProxy, fake_stripe
):
    url = reverse("admin:orders_order_act", args=[confirmed_order_id, "ship"])
    key = admin_client.get(url).context["form"]["idempotency_key"].value()
    response = admin_client.post(url, {"reason": "by hand", "idempotency_key": key}, follow=True)

    (message,) = messages_of(response)
    assert message.endswith("ship, now shipped.")
    assert len(provider.sent(CAPTURE_PATH)) == 1
    payment = Payment.objects.get(order_id=confirmed_order_id)
    assert (payment.status, payment.amount_captured) == ("captured", PRICE)
    assert_provider_consistent(fake_stripe, confirmed_order_id)


def test_payment_list_shows_the_provider_circuit_breaker(admin_client, settings):
    # given a closed breaker
    settings.PAYMENT_BREAKER_FAIL_MAX = 1
    circuit_breakers_reset()
    page = admin_client.get(reverse("admin:payments_payment_changelist"))
    assert "provider circuit breaker: closed" in page.content.decode()

    # when the provider fails and trips it
    with pytest.raises(ConnectionError):
        payment_breaker().call(_provider_down)

    # then the admin shows it open
    page = admin_client.get(reverse("admin:payments_payment_changelist"))
    assert "provider circuit breaker: open" in page.content.decode()
    circuit_breakers_reset()


def _provider_down() -> None:
    raise ConnectionError("provider down")


def test_a_payment_action_asks_before_it_moves_money(admin_client, shipped_order_id):
    payments = [
        str(pk)
        for pk in Payment.objects.filter(order_id=shipped_order_id).values_list("pk", flat=True)
    ]

    page = admin_client.post(
        reverse("admin:payments_payment_changelist"),
        {"action": "refund_full", "_selected_action": payments},
    )

    assert page.status_code == 200
    assert b"Refund these payments in full?" in page.content
    assert Payment.objects.get(order_id=shipped_order_id).status == Payment.Status.CAPTURED
