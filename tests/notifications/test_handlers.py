"""The email handlers on the outbox: each order topic sends its kind of email, once, to
the order's address, through a real SMTP server on loopback."""

import pytest

from core.actors import Actor
from core.models import OutboxMessage
from core.outbox import outbox_handle
from core.tasks import outbox_handle_task
from flows.transitions import order_transition_by_name
from fulfilment.models import FulfilmentRequest, Shipment
from inventory.models import Warehouse
from notifications.handlers import order_shipped_email, order_status_email
from notifications.models import EmailDelivery
from orders.models import Order

pytest_plugins = ("tests.support.smtp",)
pytestmark = pytest.mark.django_db

Kind = EmailDelivery.Kind
EMAIL_HANDLERS = {"notifications.order_status_email", "notifications.order_shipped_email"}


def walk(order: Order, transitions: list[str]) -> None:
    """Take transitions in the test's transaction: their outbox is never delivered."""
    for transition in transitions:
        order_transition_by_name(order_id=order.pk, transition=transition, actor=Actor.system())


def email_message(topic: str) -> OutboxMessage:
    return OutboxMessage.objects.get(topic=topic, handler__in=EMAIL_HANDLERS)


def ship_from(order: Order, warehouse: Warehouse, *, carrier: str, tracking: str) -> Shipment:
    request = FulfilmentRequest.objects.create(
        order=order, warehouse=warehouse, lines=[], status=FulfilmentRequest.Status.ACCEPTED
    )
    return Shipment.objects.create(
        order=order,
        warehouse=warehouse,
        fulfilment_request=request,
        reference=f"shp-{request.pk}",
        status=Shipment.Status.SHIPPED,
        carrier=carrier,
        tracking_number=tracking,
    )


@pytest.mark.parametrize(
    ("before", "transition", "kind", "subject"),
    [
        ([], "confirm", Kind.ORDER_CONFIRMED, "Your order {} is confirmed"),
        ([], "fail_payment", Kind.PAYMENT_FAILED, "Payment for your order {} did not go through"),
        (["confirm"], "cancel", Kind.ORDER_CANCELLED, "Your order {} was cancelled"),
        (["confirm", "route"], "ship", Kind.ORDER_SHIPPED, "Your order {} has shipped"),
        (["confirm", "route", "ship"], "refund", Kind.ORDER_REFUNDED, "Your refund for order {}"),
    ],
)
def test_each_status_sends_its_email_once_to_the_order_address(
    make_order,
    smtp_backend,
    django_capture_on_commit_callbacks,
    before,
    transition,
    kind,
    subject,
):
    order = make_order(email="grace@example.org")
    walk(order, before)

    with django_capture_on_commit_callbacks(execute=True):
        walk(order, [transition])

    (received,) = smtp_backend.messages
    assert received.rcpt_tos == ("grace@example.org",)
    assert received.header("Subject") == subject.format(order.number)
    delivery = EmailDelivery.objects.get(order=order)
    assert (delivery.kind, delivery.status, delivery.attempts) == (kind, "sent", 1)
    order.refresh_from_db()
    message = email_message(f"order.{order.status}")
    assert message.status == OutboxMessage.Status.DONE

    # Delivered again (a redelivery, a worker that died before marking it done): no
    # second email.
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxMessage.Status.DISPATCHED)
    assert outbox_handle(message.pk) is True
    outbox_handle_task.apply(args=[message.pk])

    assert len(smtp_backend.messages) == 1
    assert EmailDelivery.objects.get(order=order).attempts == 1


def test_statuses_without_an_email_send_none(make_order, smtp_backend):
    order = make_order()

    walk(order, ["confirm", "route"])

    assert not OutboxMessage.objects.filter(handler__in=EMAIL_HANDLERS, topic="order.routed")
    assert sorted(
        OutboxMessage.objects.filter(handler__in=EMAIL_HANDLERS).values_list("topic", flat=True)
    ) == ["order.confirmed"]


def test_shipped_email_names_every_carrier_and_tracking_number(make_order, smtp_backend):
    order = make_order([("Brass gear", 1999, 1), ("Difference engine", 250000, 1)])
    walk(order, ["confirm", "route", "ship"])
    ship_from(order, Warehouse.objects.get(code="main"), carrier="DHL", tracking="JJD01")
    ship_from(
        order, Warehouse.objects.create(code="east", name="East"), carrier="UPS", tracking="1Z9"
    )

    order_shipped_email(email_message("order.shipped").payload)

    (received,) = smtp_backend.messages
    text = " ".join(received.text.split())
    assert "Carrier: DHL, UPS" in text
    assert "Tracking number: JJD01, 1Z9" in text


def test_shipped_by_hand_says_so_without_tracking(make_order, smtp_backend):
    order = make_order()
    walk(order, ["confirm", "route", "ship"])

    order_shipped_email(email_message("order.shipped").payload)

    (received,) = smtp_backend.messages
    text = " ".join(received.text.split())
    assert "Carrier: our shipping team" in text
    assert "Tracking number: not available" in text


def test_status_email_handler_follows_the_payload_not_the_current_status(make_order, smtp_backend):
    # Confirmed, then cancelled before the confirmation email went out: both are sent,
    # each once, in the order the outbox delivers them.
    order = make_order()
    walk(order, ["confirm", "cancel"])

    for topic in ("order.confirmed", "order.cancelled", "order.confirmed"):
        order_status_email(email_message(topic).payload)

    kinds = EmailDelivery.objects.filter(order=order).values_list("kind", flat=True)
    assert sorted(kinds) == [Kind.ORDER_CANCELLED, Kind.ORDER_CONFIRMED]
    assert len(smtp_backend.messages) == 2
