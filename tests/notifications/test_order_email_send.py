"""order_email_send through a real SMTP server on loopback."""

import html
import pickle
import re
from datetime import timedelta

import pytest

from core.errors import NotFound
from notifications.errors import EmailNotSendable, EmailSendFailed, EmailSendInProgress
from notifications.models import EmailDelivery
from notifications.services import order_email_mark_failed, order_email_send
from payments.models import Payment
from tests.notifications.conftest import FROM_EMAIL

pytest_plugins = ("tests.support.smtp",)

Kind = EmailDelivery.Kind
SHIPPED_CONTEXT = {
    "carrier": "DHL Express",
    "tracking_number": "JD014600006281230000",
    "tracking_url": "https://track.example/JD014600006281230000",
}
ADDRESS_PARTS = ["Ada Lovelace", "1 Analytical Way", "Flat 2", "N1 9GU London", "GB"]


def flat(text: str) -> str:
    return " ".join(text.split())


def visible(markup: str) -> str:
    """The text a reader of the HTML part sees, whitespace collapsed."""
    return flat(html.unescape(re.sub(r"<[^>]+>", " ", markup)))


@pytest.fixture
def order(make_order):
    return make_order([("Brass gear", 1999, 2), ("Difference engine", 250000, 1)])


# What each kind says beyond the order itself, in the subject and in both bodies.
KIND_CASES = [
    pytest.param(
        Kind.ORDER_CONFIRMED,
        {},
        "Your order {number} is confirmed",
        ["Your payment was authorized"],
        id="order_confirmed",
    ),
    pytest.param(
        Kind.PAYMENT_FAILED,
        {},
        "Payment for your order {number} did not go through",
        ["Your card has insufficient funds", "{expires_at}", "retry the payment"],
        id="payment_failed",
    ),
    pytest.param(
        Kind.ORDER_SHIPPED,
        SHIPPED_CONTEXT,
        "Your order {number} has shipped",
        ["DHL Express", "JD014600006281230000"],
        id="order_shipped",
    ),
    pytest.param(
        Kind.ORDER_CANCELLED,
        {},
        "Your order {number} was cancelled",
        ["Your order was cancelled", "You have not been charged"],
        id="order_cancelled",
    ),
    pytest.param(
        Kind.ORDER_REFUNDED,
        {},
        "Your refund for order {number}",
        ["2,539.98 EUR is on its way back"],
        id="order_refunded",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("kind", "context", "subject", "says"), KIND_CASES)
def test_each_kind_reaches_the_order_email_as_text_and_html(
    smtp_backend, order, kind, context, subject, says
):
    # Given an order, with the payment its kind talks about
    if kind == Kind.PAYMENT_FAILED:
        Payment.objects.create(
            order=order,
            payment_method="pm_card_chargeDeclinedInsufficientFunds",
            amount=order.total_amount,
            currency=order.currency,
            status=Payment.Status.FAILED,
            decline_code="insufficient_funds",
        )
    if kind == Kind.ORDER_REFUNDED:
        Payment.objects.create(
            order=order,
            payment_method="pm_card_visa",
            amount=order.total_amount,
            currency=order.currency,
            status=Payment.Status.CAPTURED,
            amount_captured=order.total_amount,
            amount_refunded=order.total_amount,
        )

    # When its email is sent
    delivery = order_email_send(order_id=order.pk, kind=kind, context=context)

    # Then one message reached the order's address, from the configured sender
    [received] = smtp_backend.messages
    assert received.rcpt_tos == ("ada@example.com",)
    assert received.header("To") == "ada@example.com"
    assert received.header("From") == FROM_EMAIL
    assert received.header("Subject") == subject.format(number=order.number)
    assert received.header("Message-ID") == delivery.message_id
    assert delivery.message_id == f"<email-delivery-{delivery.pk}.{order.pk.hex}@mail.oms.test>"
    # with a plain text and an HTML part that both carry the order and the kind's news
    assert received.message.get_content_type() == "multipart/alternative"
    expires_at = order.reservation_expires_at.strftime("%Y-%m-%d %H:%M UTC")
    for body in (flat(received.text), visible(received.html)):
        assert order.number in body
        for fragment in [
            "Brass gear",
            "Difference engine",
            "39.98 EUR",
            "2,500.00 EUR",
            "Subtotal",
            "2,539.98 EUR",
            *ADDRESS_PARTS,
        ]:
            assert fragment in body, (fragment, body)
        for line in order.lines.all():
            assert line.sku in body
        for fragment in says:
            assert fragment.format(expires_at=expires_at) in body, (fragment, body)
    assert "2 x Brass gear" in flat(received.text)
    assert "<td" in received.html
    # and the delivery records it
    assert delivery.status == EmailDelivery.Status.SENT
    assert delivery.kind == kind
    assert delivery.to_address == "ada@example.com"
    assert delivery.subject == received.header("Subject")
    assert delivery.attempts == 1
    assert delivery.sent_at is not None
    assert delivery.locked_at is None


@pytest.mark.django_db
def test_shipped_email_links_the_tracking_page_in_html(smtp_backend, order):
    order_email_send(order_id=order.pk, kind=Kind.ORDER_SHIPPED, context=SHIPPED_CONTEXT)

    [received] = smtp_backend.messages
    assert '<a href="https://track.example/JD014600006281230000">' in received.html
    assert "https://track.example/JD014600006281230000" in received.text


@pytest.mark.django_db
def test_tracking_url_that_is_not_a_web_link_is_left_out(smtp_backend, order):
    context = {**SHIPPED_CONTEXT, "tracking_url": "javascript:alert(1)"}

    order_email_send(order_id=order.pk, kind=Kind.ORDER_SHIPPED, context=context)

    [received] = smtp_backend.messages
    assert "javascript" not in received.html
    assert "javascript" not in received.text


@pytest.mark.django_db
def test_amounts_in_a_zero_decimal_currency_have_no_decimals(smtp_backend, make_order):
    order = make_order([("Tea bowl", 1200, 3)], currency="JPY")

    order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    [received] = smtp_backend.messages
    for body in (received.text, received.html):
        assert "3,600 JPY" in body
        assert "36.00" not in body


@pytest.mark.django_db
def test_names_are_escaped_in_html_and_verbatim_in_text(smtp_backend, make_order):
    order = make_order([("Salt & <Pepper>", 500, 1)])

    order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    [received] = smtp_backend.messages
    assert "Salt & <Pepper>" in received.text
    assert "Salt &amp; &lt;Pepper&gt;" in received.html
    assert "<Pepper>" not in received.html


@pytest.mark.django_db
def test_context_overrides_decline_code_and_refunded_amount(smtp_backend, order):
    order_email_send(
        order_id=order.pk, kind=Kind.PAYMENT_FAILED, context={"decline_code": "expired_card"}
    )
    order_email_send(order_id=order.pk, kind=Kind.ORDER_REFUNDED, context={"refunded_amount": 1500})

    failed, refunded = smtp_backend.messages
    assert "Your card has expired" in flat(failed.text)
    assert "15.00 EUR is on its way back" in flat(refunded.text)


@pytest.mark.django_db
def test_unknown_decline_code_gets_the_generic_hint(smtp_backend, order):
    order_email_send(
        order_id=order.pk, kind=Kind.PAYMENT_FAILED, context={"decline_code": "stolen_card"}
    )

    [received] = smtp_backend.messages
    assert "Your bank declined the payment" in flat(received.text)
    assert "stolen" not in received.text


@pytest.mark.django_db
def test_sending_twice_sends_once(smtp_backend, order):
    first = order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)
    second = order_email_send(order_id=str(order.pk), kind="order_confirmed")

    assert second.pk == first.pk
    assert second.status == EmailDelivery.Status.SENT
    assert second.attempts == 1
    assert len(smtp_backend.messages) == 1
    assert EmailDelivery.objects.filter(order=order).count() == 1


@pytest.mark.django_db
def test_each_kind_is_sent_once_per_order(smtp_backend, order):
    order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)
    order_email_send(order_id=order.pk, kind=Kind.ORDER_CANCELLED)
    order_email_send(order_id=order.pk, kind=Kind.ORDER_CANCELLED)

    assert len(smtp_backend.messages) == 2
    assert sorted(EmailDelivery.objects.values_list("kind", flat=True)) == [
        "order_cancelled",
        "order_confirmed",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("code", "stage", "permanent"),
    [(451, "data", False), (554, "data", True), (550, "rcpt", True), (421, "mail", False)],
)
def test_smtp_reply_failure_raises_and_keeps_delivery_pending_then_succeeds(
    smtp_backend, order, code, stage, permanent
):
    # Given an SMTP server that rejects the next delivery
    smtp_backend.fail_next(1, code=code, stage=stage)

    # When the email is sent, it fails with the server's reply
    with pytest.raises(EmailSendFailed) as failure:
        order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    assert not isinstance(failure.value, EmailSendInProgress)
    assert failure.value.smtp_code == code
    assert failure.value.permanent is permanent
    delivery = EmailDelivery.objects.get(order=order, kind=Kind.ORDER_CONFIRMED)
    assert failure.value.delivery_id == delivery.pk
    assert delivery.status == EmailDelivery.Status.PENDING
    assert delivery.attempts == 1
    assert str(code) in delivery.last_error
    assert delivery.locked_at is None
    assert delivery.sent_at is None
    assert smtp_backend.messages == []

    # When it is sent again, it goes out once
    delivery = order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    assert delivery.status == EmailDelivery.Status.SENT
    assert delivery.attempts == 2
    assert str(code) in delivery.last_error  # the last failure stays on record
    assert len(smtp_backend.messages) == 1


@pytest.mark.django_db
def test_refused_connection_raises_and_keeps_delivery_pending_then_succeeds(smtp_backend, order):
    smtp_backend.refuse_connections()

    with pytest.raises(EmailSendFailed) as failure:
        order_email_send(order_id=order.pk, kind=Kind.ORDER_SHIPPED, context=SHIPPED_CONTEXT)

    assert failure.value.smtp_code is None
    assert failure.value.permanent is False
    delivery = EmailDelivery.objects.get(pk=failure.value.delivery_id)
    assert delivery.status == EmailDelivery.Status.PENDING
    assert delivery.attempts == 1
    assert "ConnectionRefusedError" in delivery.last_error
    assert delivery.locked_at is None

    smtp_backend.accept_connections()
    delivery = order_email_send(order_id=order.pk, kind=Kind.ORDER_SHIPPED, context=SHIPPED_CONTEXT)

    assert delivery.status == EmailDelivery.Status.SENT
    assert delivery.attempts == 2
    assert len(smtp_backend.messages) == 1


@pytest.mark.django_db
def test_every_retry_carries_the_same_message_id(smtp_backend, order):
    smtp_backend.fail_next(2, code=451)
    for _ in range(2):
        with pytest.raises(EmailSendFailed):
            order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)
    first_id = EmailDelivery.objects.get().message_id

    delivery = order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    assert delivery.attempts == 3
    assert delivery.message_id == first_id
    assert smtp_backend.messages[0].header("Message-ID") == first_id


@pytest.mark.django_db
def test_mark_failed_gives_up_and_a_later_send_tries_again(smtp_backend, order):
    smtp_backend.fail_next(1, code=451)
    with pytest.raises(EmailSendFailed) as failure:
        order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    delivery = order_email_mark_failed(
        delivery_id=failure.value.delivery_id, error="retries exhausted"
    )

    assert delivery.status == EmailDelivery.Status.FAILED
    assert delivery.last_error == "retries exhausted"
    assert delivery.locked_at is None

    delivery = order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    assert delivery.status == EmailDelivery.Status.SENT
    assert delivery.attempts == 2
    assert len(smtp_backend.messages) == 1


@pytest.mark.django_db
def test_mark_failed_leaves_a_sent_delivery_sent(smtp_backend, order):
    sent = order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    delivery = order_email_mark_failed(delivery_id=sent.pk, error="late give-up")

    assert delivery.status == EmailDelivery.Status.SENT
    assert delivery.last_error == ""


@pytest.mark.django_db
def test_mark_failed_for_an_unknown_delivery_is_not_found():
    with pytest.raises(NotFound):
        order_email_mark_failed(delivery_id=987654321, error="retries exhausted")


@pytest.mark.django_db
def test_a_send_whose_worker_died_is_taken_over_once_its_lock_expires(
    smtp_backend, order, monkeypatch, settings
):
    # Given a worker that died after the SMTP server accepted the message, before it
    # recorded the delivery as sent
    def die(**kwargs):
        raise SystemExit("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr("notifications.services._delivery_mark_sent", die)
        with pytest.raises(SystemExit):
            order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)
    assert len(smtp_backend.messages) == 1

    # When another worker tries while the dead one's lock is live, it is told to retry
    with pytest.raises(EmailSendInProgress) as in_progress:
        order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)
    assert isinstance(in_progress.value, EmailSendFailed)
    assert len(smtp_backend.messages) == 1

    # When the lock has expired, the next try sends again with the same Message-ID, so
    # the MTA can drop the duplicate
    settings.EMAIL_SEND_LOCK_TIMEOUT = timedelta(0)
    delivery = order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)

    assert delivery.status == EmailDelivery.Status.SENT
    assert delivery.attempts == 2
    first, second = smtp_backend.messages
    assert first.header("Message-ID") == second.header("Message-ID") == delivery.message_id


@pytest.mark.django_db
def test_shipped_email_without_tracking_is_refused_before_anything_is_recorded(smtp_backend, order):
    with pytest.raises(EmailNotSendable) as refused:
        order_email_send(order_id=order.pk, kind=Kind.ORDER_SHIPPED, context={"carrier": "DHL"})

    assert refused.value.extra["missing"] == ["tracking_number"]
    assert not EmailDelivery.objects.exists()
    assert smtp_backend.messages == []


@pytest.mark.django_db
def test_unknown_kind_is_refused(smtp_backend, order):
    with pytest.raises(EmailNotSendable):
        order_email_send(order_id=order.pk, kind="order_teleported")

    assert not EmailDelivery.objects.exists()


@pytest.mark.django_db
def test_unknown_order_is_not_found(smtp_backend):
    with pytest.raises(NotFound):
        order_email_send(order_id="00000000-0000-0000-0000-000000000000", kind=Kind.ORDER_CONFIRMED)


def test_send_failure_survives_pickling():
    error = EmailSendInProgress("busy", delivery_id=7, smtp_code=None)
    failed = EmailSendFailed("rejected", delivery_id=8, smtp_code=554)

    copy, failed_copy = pickle.loads(pickle.dumps((error, failed)))  # noqa: S301 (our own bytes)

    assert type(copy) is EmailSendInProgress
    assert (copy.detail, copy.delivery_id, copy.smtp_code) == ("busy", 7, None)
    assert (failed_copy.delivery_id, failed_copy.smtp_code, failed_copy.permanent) == (
        8,
        554,
        True,
    )
