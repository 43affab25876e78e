"""The transactional outbox: written with the state change, relayed after commit, swept
when the relay missed, handled with one effect however often it is delivered.

Celery is eager here: a dispatched message is handled inline, inside `apply_async`.
"""

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from core.actors import Actor
from core.models import OutboxMessage
from core.outbox import outbox_dispatch, outbox_handle, outbox_handler, outbox_publish, outbox_sweep
from core.tasks import outbox_handle_task
from fakes.warehouse import FakeWarehouse
from flows.handlers import route_order
from flows.place import OrderLineRequest, order_place
from flows.transitions import order_transition_by_name
from fulfilment.models import FulfilmentRequest, Shipment
from inventory.models import Product, Warehouse
from notifications.handlers import order_status_email
from notifications.models import EmailDelivery
from orders.errors import InvalidTransition
from orders.models import Order, OrderStatusChange
from orders.states import OrderStatus
from tests.factories import UserFactory
from tests.support.fake_warehouse import WAREHOUSE_SECRET

pytest_plugins = ("tests.support.smtp", "tests.support.fake_warehouse")

PROBE_TOPIC = "test.outbox.probe"
PROBE_HANDLER = "tests.outbox.probe"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Way",
    "line2": "",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}

# What the probe handler saw, one entry per call: the message as the worker found it.
_probe_calls: list[dict[str, Any]] = []
_probe_lock = threading.Lock()


@outbox_handler(PROBE_TOPIC, name=PROBE_HANDLER, queue="events")
def _probe(payload: dict[str, Any]) -> None:
    message = OutboxMessage.objects.get(dedup_key=f"{PROBE_HANDLER}:{payload['key']}")
    with _probe_lock:
        _probe_calls.append(
            {
                "key": payload["key"],
                "status": message.status,
                "dispatched_at": message.dispatched_at,
                "available_at": message.available_at,
            }
        )


@pytest.fixture(autouse=True)
def _probe_reset() -> None:
    with _probe_lock:
        _probe_calls.clear()


def probe_publish(key: str) -> OutboxMessage:
    (message_id,) = outbox_publish(topic=PROBE_TOPIC, payload={"key": key}, key=key)
    return OutboxMessage.objects.get(pk=message_id)


def probe_handled() -> Counter[str]:
    with _probe_lock:
        return Counter(call["key"] for call in _probe_calls)


@pytest.fixture
def placed_order(stocked_product: Callable[..., Product]) -> Order:
    """An order waiting for payment, its stock held at warehouse `main` (operated by hand)."""
    product = stocked_product(quantities={"main": 5}, price=1250)
    return order_place(
        customer=UserFactory(),
        email="ada@example.com",
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(sku=product.sku, quantity=2)],
        actor=Actor.system(),
    )


def confirm(order: Order) -> Order:
    return order_transition_by_name(order_id=order.pk, transition="confirm", actor=Actor.system())


# Written with the state change.


def test_status_change_writes_one_message_per_handler_with_the_change(
    placed_order, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        confirm(placed_order)

    change = OrderStatusChange.objects.get(order=placed_order, to_status=OrderStatus.CONFIRMED)
    messages = OutboxMessage.objects.filter(topic="order.confirmed")
    assert sorted(messages.values_list("handler", "queue")) == [
        ("fulfilment.route_order", "routing"),
        ("notifications.order_status_email", "emails"),
    ]
    for message in messages:
        assert message.status == OutboxMessage.Status.PENDING
        assert message.dedup_key == f"{message.handler}:order-status-change-{change.pk}"
        assert message.payload == {
            "order_id": str(placed_order.pk),
            "order_number": placed_order.number,
            "from_status": OrderStatus.PENDING_PAYMENT,
            "to_status": OrderStatus.CONFIRMED,
            "transition": "confirm",
            "status_change_id": change.pk,
        }
    # Nothing is handed to the broker before the transaction commits.
    dispatches = [call for call in callbacks if call.__qualname__.startswith("outbox_publish")]
    assert len(dispatches) == 1


def test_rolled_back_status_change_leaves_no_message(placed_order) -> None:
    written: list[int] = []

    def confirm_then_fail() -> None:
        with transaction.atomic():
            confirm(placed_order)
            written.append(OutboxMessage.objects.filter(topic="order.confirmed").count())
            raise RuntimeError("something failed after the change")

    with pytest.raises(RuntimeError, match="after the change"):
        confirm_then_fail()

    assert written == [2]

    placed_order.refresh_from_db()
    assert placed_order.status == OrderStatus.PENDING_PAYMENT
    assert not OutboxMessage.objects.exists()
    assert not OrderStatusChange.objects.filter(to_status=OrderStatus.CONFIRMED).exists()


def test_refused_transition_writes_no_message(placed_order):
    with pytest.raises(InvalidTransition):
        order_transition_by_name(order_id=placed_order.pk, transition="ship", actor=Actor.system())

    assert not OutboxMessage.objects.exists()
    assert placed_order.status_changes.count() == 1


def test_repeated_key_is_written_once(db):
    first = outbox_publish(topic=PROBE_TOPIC, payload={"key": "same"}, key="same")
    again = outbox_publish(topic=PROBE_TOPIC, payload={"key": "same"}, key="same")

    assert first == again
    assert OutboxMessage.objects.filter(topic=PROBE_TOPIC).count() == 1


def test_topic_without_handlers_writes_nothing(db):
    assert outbox_publish(topic="test.outbox.nobody", payload={}, key="k") == []
    assert not OutboxMessage.objects.exists()


# Relayed after commit.


def test_commit_dispatches_the_messages_and_the_worker_finds_them_dispatched(
    db, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        message = probe_publish("after-commit")
        assert probe_handled() == Counter()

    (call,) = _probe_calls
    assert call["status"] == OutboxMessage.Status.DISPATCHED
    assert call["available_at"] == call["dispatched_at"] + settings.OUTBOX_REDISPATCH_AFTER
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DONE
    assert message.attempts == 1
    assert message.done_at is not None


@pytest.mark.django_db(transaction=True)
def test_real_commit_hands_messages_to_the_broker():
    with transaction.atomic():
        message = probe_publish("real-commit")
        assert probe_handled() == Counter()

    assert probe_handled() == Counter({"real-commit": 1})
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DONE


def test_broker_outage_leaves_the_message_pending_for_the_sweeper(db):
    message = probe_publish("broker-down")

    with mock.patch.object(
        outbox_handle_task, "apply_async", side_effect=OperationalError("broker down")
    ):
        assert outbox_dispatch([message.pk]) == 0

    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.PENDING
    assert message.available_at <= timezone.now()
    assert probe_handled() == Counter()

    assert outbox_sweep() == 1

    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DONE
    assert probe_handled() == Counter({"broker-down": 1})


def test_sweep_during_broker_outage_keeps_messages_pending(db):
    message = probe_publish("still-down")

    with mock.patch.object(
        outbox_handle_task, "apply_async", side_effect=OperationalError("broker down")
    ):
        assert outbox_sweep() == 0

    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.PENDING
    assert outbox_sweep() == 1
    assert probe_handled() == Counter({"still-down": 1})


def test_sweeper_redispatches_an_expired_lease_and_leaves_a_fresh_one_alone(db):
    now = timezone.now()
    lease = settings.OUTBOX_REDISPATCH_AFTER
    # Handed to the broker, then lost (a worker died holding it).
    expired = probe_publish("lease-expired")
    OutboxMessage.objects.filter(pk=expired.pk).update(
        status=OutboxMessage.Status.DISPATCHED,
        dispatched_at=now - lease - timedelta(seconds=5),
        available_at=now - timedelta(seconds=5),
    )
    # Handed to the broker a moment ago: a worker may be on it.
    fresh = probe_publish("lease-fresh")
    OutboxMessage.objects.filter(pk=fresh.pk).update(
        status=OutboxMessage.Status.DISPATCHED, dispatched_at=now, available_at=now + lease
    )

    assert outbox_sweep(now=now) == 1

    assert probe_handled() == Counter({"lease-expired": 1})
    expired.refresh_from_db()
    assert expired.status == OutboxMessage.Status.DONE
    fresh.refresh_from_db()
    assert fresh.status == OutboxMessage.Status.DISPATCHED
    assert fresh.available_at == now + lease

    # Once its lease runs out too, it is sent again.
    assert outbox_sweep(now=now + lease + timedelta(seconds=1)) == 1
    assert probe_handled() == Counter({"lease-expired": 1, "lease-fresh": 1})


def test_sweeper_leaves_messages_not_yet_due_and_done_ones_alone(db):
    now = timezone.now()
    later = probe_publish("backing-off")
    OutboxMessage.objects.filter(pk=later.pk).update(available_at=now + timedelta(minutes=1))
    done = probe_publish("done")
    OutboxMessage.objects.filter(pk=done.pk).update(
        status=OutboxMessage.Status.DONE, available_at=now - timedelta(hours=1)
    )

    assert outbox_sweep(now=now) == 0
    assert probe_handled() == Counter()


def probe_messages_pending(keys: list[str]) -> list[int]:
    messages = OutboxMessage.objects.bulk_create(
        OutboxMessage(
            topic=PROBE_TOPIC,
            handler=PROBE_HANDLER,
            queue="events",
            payload={"key": key},
            dedup_key=f"{PROBE_HANDLER}:{key}",
        )
        for key in keys
    )
    return [message.pk for message in messages]


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_never_claim_the_same_message(concurrently):
    keys = [f"swept-{n}" for n in range(250)]
    probe_messages_pending(keys)

    sent = concurrently([outbox_sweep for _ in range(4)])

    assert all(isinstance(count, int) for count in sent), sent
    assert sum(sent) == len(keys)
    assert probe_handled() == Counter(dict.fromkeys(keys, 1))
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"done"}
    # Nothing left for a later sweep either.
    assert outbox_sweep() == 0


@pytest.mark.django_db(transaction=True)
def test_relay_and_sweeper_racing_hand_each_message_over_once(concurrently):
    keys = [f"raced-{n}" for n in range(150)]
    ids = probe_messages_pending(keys)

    sent = concurrently(
        [lambda: outbox_dispatch(ids), lambda: outbox_dispatch(ids[::-1]), outbox_sweep]
    )

    assert all(isinstance(count, int) for count in sent), sent
    assert sum(sent) == len(keys)
    assert probe_handled() == Counter(dict.fromkeys(keys, 1))


# Handled with one effect.


def test_handled_message_is_not_handled_again(db):
    message = probe_publish("once")
    outbox_dispatch([message.pk])

    assert outbox_handle(message.pk) is False
    outbox_handle_task.apply(args=[message.pk])

    assert probe_handled() == Counter({"once": 1})


def test_order_email_handled_twice_is_sent_once(
    placed_order, smtp_backend, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        confirm(placed_order)
    message = OutboxMessage.objects.get(handler="notifications.order_status_email")

    # A worker sent it and died before marking the message done; another runs it again.
    order_status_email(message.payload)
    assert outbox_handle(message.pk) is True
    outbox_handle_task.apply(args=[message.pk])

    assert len(smtp_backend.messages) == 1
    assert smtp_backend.messages[0].header("To") == "ada@example.com"
    delivery = EmailDelivery.objects.get(order=placed_order)
    assert (delivery.kind, delivery.status) == ("order_confirmed", "sent")


def test_routing_handled_twice_asks_the_warehouse_once(
    placed_order, fake_warehouse: FakeWarehouse, django_capture_on_commit_callbacks
):
    fake_warehouse.configure(auto_callbacks=False)
    Warehouse.objects.filter(code="main").update(
        fulfilment_url=fake_warehouse.requests_url, fulfilment_secret=WAREHOUSE_SECRET
    )
    with django_capture_on_commit_callbacks(execute=False):
        confirm(placed_order)
    message = OutboxMessage.objects.get(handler="fulfilment.route_order")

    route_order(message.payload)
    assert outbox_handle(message.pk) is True
    outbox_handle_task.apply(args=[message.pk])

    assert len(fake_warehouse.requests()) == 1
    assert FulfilmentRequest.objects.filter(order=placed_order).count() == 1
    assert Shipment.objects.filter(order=placed_order).count() == 1
    placed_order.refresh_from_db()
    assert placed_order.status == OrderStatus.ROUTED
    assert placed_order.status_changes.filter(transition="route").count() == 1
