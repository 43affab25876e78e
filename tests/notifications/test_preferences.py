"""Customer email preferences: optional emails (shipped, delivered, refund notices) can
be switched off through the API or the one-click link every such email carries; the
confirmation and payment problems always go out. Through a real SMTP server."""

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from core.actors import Actor
from flows.transitions import order_transition_by_name
from notifications.handlers import order_shipped_email, refund_issued_email
from notifications.models import EmailDelivery, NotificationPreference
from orders.models import Order
from tests.conftest import token_client

pytest_plugins = ("tests.support.smtp",)
pytestmark = pytest.mark.django_db

PREFERENCES = "/api/v1/notification-preferences/"


def walk(order: Order, transitions: list[str], capture: Any) -> None:
    with capture(execute=True):
        for transition in transitions:
            order_transition_by_name(order_id=order.pk, transition=transition, actor=Actor.system())


def shipped_email(order: Order) -> None:
    order_shipped_email({"order_id": str(order.pk)})


def test_an_opted_out_customer_gets_no_shipped_email_but_still_the_confirmation(
    make_order, smtp_backend, django_capture_on_commit_callbacks
):
    order = make_order()
    client = token_client(order.customer)
    response = client.patch(PREFERENCES, {"order_shipped": False}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["order_shipped"] is False
    assert response.json()["order_confirmed"] is True

    walk(order, ["confirm", "route", "ship"], django_capture_on_commit_callbacks)
    shipped_email(order)

    kinds = list(EmailDelivery.objects.filter(order=order).values_list("kind", flat=True))
    assert kinds == ["order_confirmed"]
    assert [m.header("Subject") for m in smtp_backend.messages] == [
        f"Your order {order.number} is confirmed"
    ]
    assert smtp_backend.messages[0].header("List-Unsubscribe") == ""


def test_mandatory_emails_cannot_be_switched_off_and_unknown_kinds_are_refused(make_order):
    client = token_client(make_order().customer)

    mandatory = client.patch(PREFERENCES, {"order_confirmed": False}, format="json")
    unknown = client.patch(PREFERENCES, {"newsletter": False}, format="json")
    not_bool = client.patch(PREFERENCES, {"order_shipped": "no"}, format="json")

    assert (mandatory.status_code, mandatory.json()["code"]) == (422, "notification_mandatory")
    assert (unknown.status_code, unknown.json()["code"]) == (400, "validation_error")
    assert (not_bool.status_code, not_bool.json()["code"]) == (400, "validation_error")
    assert not NotificationPreference.objects.exists()
    assert Client().get(PREFERENCES).status_code == 401


def test_the_one_click_link_in_a_shipped_email_unsubscribes_once_and_is_idempotent(
    make_order, smtp_backend, django_capture_on_commit_callbacks
):
    # Given a shipped email, which carries RFC 8058 one-click headers
    order = make_order()
    walk(order, ["confirm", "route", "ship"], django_capture_on_commit_callbacks)
    shipped_email(order)
    received = smtp_backend.messages[-1]
    link = received.header("List-Unsubscribe").strip().strip("<>")
    assert received.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert link in received.text

    # When the mail client POSTs to it, twice
    target = urlsplit(link)
    path = f"{target.path}?{target.query}"
    first = Client().post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    second = Client().post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )

    # Then shipped emails are off for that customer, once and for all
    assert (first.status_code, first.json()) == (200, {"unsubscribed": "order_shipped"})
    assert (second.status_code, second.json()) == (200, {"unsubscribed": "order_shipped"})
    assert list(
        NotificationPreference.objects.filter(user=order.customer).values_list("kind", "enabled")
    ) == [("order_shipped", False)]
    forged = Client().post(path[:-3] + "xyz")
    assert (forged.status_code, forged.json()["code"]) == (400, "unsubscribe_link_invalid")


def test_each_refund_sends_a_notice_with_its_own_amount(make_order, smtp_backend):
    order = make_order([("Brass gear", 1000, 2)])

    refund_issued_email({"order_id": str(order.pk), "amount": 300, "amount_refunded": 300})
    refund_issued_email({"order_id": str(order.pk), "amount": 1700, "amount_refunded": 2000})
    refund_issued_email({"order_id": str(order.pk), "amount": 1700, "amount_refunded": 2000})

    subjects = [m.header("Subject") for m in smtp_backend.messages]
    assert subjects == [
        f"We refunded 3.00 EUR for order {order.number}",
        f"We refunded 17.00 EUR for order {order.number}",
    ]
    assert "so far: 20.00 EUR" in smtp_backend.messages[1].text
    assert EmailDelivery.objects.filter(order=order, kind="refund_issued").count() == 2
