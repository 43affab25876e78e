"""Concurrent sends of one email, each from its own thread and database connection."""

import pytest
from django.core.mail.backends.smtp import EmailBackend
from django.db import connection

from notifications.errors import EmailSendInProgress
from notifications.models import EmailDelivery
from notifications.services import order_email_send
from tests.conftest import run_concurrently

pytest_plugins = ("tests.support.smtp",)

Kind = EmailDelivery.Kind
SENDERS = 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_of_one_email_send_it_once(smtp_backend, make_order):
    # Given an order and an SMTP server slow enough that every sender overlaps
    order = make_order()
    smtp_backend.set_delay(0.3)

    # When several workers send its confirmation at the same moment
    results = run_concurrently(
        [
            lambda: order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)
            for _ in range(SENDERS)
        ]
    )

    # Then one message went out and one delivery row records it
    assert len(smtp_backend.messages) == 1
    delivery = EmailDelivery.objects.get()
    assert delivery.status == EmailDelivery.Status.SENT
    assert delivery.attempts == 1
    # and every other worker either saw it sent or was told to retry later
    for result in results:
        if isinstance(result, EmailDelivery):
            assert result.pk == delivery.pk
            assert result.status == EmailDelivery.Status.SENT
        else:
            assert isinstance(result, EmailSendInProgress), repr(result)
            assert result.delivery_id == delivery.pk
    assert any(isinstance(result, EmailDelivery) for result in results)


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_of_different_kinds_each_send_once(smtp_backend, make_order):
    order = make_order()
    kinds = [Kind.ORDER_CONFIRMED, Kind.ORDER_CANCELLED] * 4

    results = run_concurrently(
        [lambda kind=kind: order_email_send(order_id=order.pk, kind=kind) for kind in kinds]
    )

    assert not [
        result for result in results if not isinstance(result, EmailDelivery | EmailSendInProgress)
    ]
    assert sorted(message.header("Subject").split()[-1] for message in smtp_backend.messages) == [
        "cancelled",
        "confirmed",
    ]
    assert EmailDelivery.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_no_transaction_is_open_while_talking_to_smtp(smtp_backend, make_order, monkeypatch):
    order = make_order()
    seen = []
    send_messages = EmailBackend.send_messages

    def spy(backend, messages):
        seen.append(connection.in_atomic_block)
        return send_messages(backend, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", spy)

    order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    assert seen == [False]
