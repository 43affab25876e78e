"""Staff and failing subscribers: a subscription failing for too long is disabled with
its reason and enabled again (API and admin); one event, or every event since a time,
is re-delivered (API and admin). Through a real receiver on loopback."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from core.outbox import outbox_handle
from events.models import EventDelivery, EventSubscription
from orders.models import OrderEvent
from tests.conftest import token_client
from tests.events.conftest import (
    confirmed_order,
    events_messages,
    make_due,
    payment_captured,
    send_due,
    subscribe,
)
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def support() -> Any:
    return token_client(StaffFactory(groups=["support"]), scopes=["webhooks:write"])


def redeliver_url(subscription: EventSubscription) -> str:
    return reverse("event-subscription-redeliver", args=[subscription.pk])


def enable_url(subscription: EventSubscription) -> str:
    return reverse("event-subscription-enable", args=[subscription.pk])


def test_a_subscriber_failing_for_too_long_is_disabled_with_its_reason_then_enabled(
    receiver, settings, support
):
    # Given a rule of three failed attempts over no time at all, and a receiver that fails
    settings.EVENTS_DISABLE_AFTER = timedelta(0)
    settings.EVENTS_DISABLE_AFTER_ATTEMPTS = 3
    subscription = subscribe(receiver.url("/down"), name="down")
    order = confirmed_order()
    receiver.fail_next["/down"] = 3

    # When its first event fails three times
    for message in events_messages(order):
        outbox_handle(message.pk)
    make_due(subscription)
    send_due()
    subscription.refresh_from_db()
    assert subscription.is_active
    make_due(subscription)
    send_due()

    # Then the subscription is disabled with the reason, and nothing more is sent
    subscription.refresh_from_db()
    assert not subscription.is_active
    assert subscription.disabled_at is not None
    assert "Every attempt failed" in subscription.disabled_reason
    assert "3 attempts" in subscription.disabled_reason
    assert "HTTP 500" in subscription.disabled_reason
    make_due(subscription)
    send_due()
    assert len(receiver.on("/down")) == 3

    # When support enables it again
    response = support.post(enable_url(subscription), format="json")

    # Then it is active, its pending events go out at once, in sequence
    assert response.status_code == 200
    assert response.json()["is_active"] is True
    assert response.json()["disabled_reason"] == ""
    send_due()
    assert [r.event["sequence"] for r in receiver.on("/down")] == [1, 1, 1, 1, 2]
    subscription.refresh_from_db()
    assert (subscription.failing_since, subscription.failed_attempts) == (None, 0)


def test_a_success_clears_the_failing_streak(receiver, settings):
    settings.EVENTS_DISABLE_AFTER = timedelta(0)
    settings.EVENTS_DISABLE_AFTER_ATTEMPTS = 3
    subscription = subscribe(receiver.url("/flaky"), name="flaky")
    receiver.fail_next["/flaky"] = 2
    order = confirmed_order()

    for message in events_messages(order):
        outbox_handle(message.pk)
    make_due(subscription)
    send_due()
    subscription.refresh_from_db()
    assert subscription.failed_attempts == 2
    make_due(subscription)
    send_due()

    subscription.refresh_from_db()
    assert subscription.is_active
    assert (subscription.failing_since, subscription.failed_attempts) == (None, 0)
    assert len(receiver.on("/flaky")) == 4


def test_admin_enables_a_disabled_subscription(admin_client, receiver):
    subscription = subscribe(
        receiver.url("/down"), name="down", is_active=False, disabled_reason="failing"
    )

    response = admin_client.post(
        reverse("admin:events_eventsubscription_changelist"),
        {"action": "enable", "index": "0", "_selected_action": [str(subscription.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    subscription.refresh_from_db()
    assert (subscription.is_active, subscription.disabled_reason) == (True, "")


def test_support_redelivers_one_event(receiver, support):
    # Given an order whose events were delivered
    subscription = subscribe(receiver.url("/crm"), name="crm")
    order = confirmed_order()
    for message in events_messages(order):
        outbox_handle(message.pk)
    first = OrderEvent.objects.get(order=order, sequence=1)

    # When support re-delivers the first event
    response = support.post(redeliver_url(subscription), {"event_id": str(first.id)}, "json")
    assert response.status_code == 202
    assert response.json() == {"queued": 1}
    send_due()

    # Then it arrived again with the same id, and nothing else did
    assert [r.event["id"] for r in receiver.on("/crm")] == [
        str(first.id),
        str(OrderEvent.objects.get(order=order, sequence=2).id),
        str(first.id),
    ]
    delivery = EventDelivery.objects.get(event=first)
    assert (delivery.status, delivery.attempts, delivery.tries.count()) == ("delivered", 1, 2)


def test_support_redelivers_every_event_since_a_time_in_each_orders_sequence(receiver, support):
    # Given an older order, then two orders after a point in time, none delivered
    old = confirmed_order()
    OrderEvent.objects.filter(order=old).update(occurred_at=timezone.now() - timedelta(hours=2))
    since = timezone.now() - timedelta(hours=1)
    recent = [confirmed_order(), confirmed_order()]
    payment_captured(recent[0])
    subscription = subscribe(
        receiver.url("/late"), name="late", topics=["order.created", "payment.captured"]
    )

    # When support re-delivers everything since that time
    response = support.post(redeliver_url(subscription), {"since": since.isoformat()}, "json")
    assert response.status_code == 202
    assert response.json() == {"queued": 3}
    send_due()

    # Then the recent orders' subscribed events arrived, each order in sequence
    received = [(r.event["order_id"], r.event["type"]) for r in receiver.on("/late")]
    assert sorted(received) == sorted(
        [
            (str(recent[0].pk), "order.created"),
            (str(recent[0].pk), "payment.captured"),
            (str(recent[1].pk), "order.created"),
        ]
    )
    assert received.index((str(recent[0].pk), "order.created")) < received.index(
        (str(recent[0].pk), "payment.captured")
    )


def test_redelivery_refuses_what_it_cannot_do(receiver, support):
    subscription = subscribe(receiver.url("/x"), name="x", topics=["payment.captured"])
    order = confirmed_order()
    created = OrderEvent.objects.get(order=order, sequence=1)

    unsubscribed = support.post(redeliver_url(subscription), {"event_id": str(created.id)}, "json")
    both = support.post(
        redeliver_url(subscription),
        {"event_id": str(created.id), "since": timezone.now().isoformat()},
        "json",
    )
    naive = support.post(redeliver_url(subscription), {"since": "2026-11-29T10:00:00"}, "json")
    missing = support.post(
        reverse("event-subscription-redeliver", args=[subscription.pk + 1000]),
        {"since": timezone.now().isoformat()},
        "json",
    )

    assert (unsubscribed.status_code, unsubscribed.json()["code"]) == (409, "event_not_subscribed")
    assert (both.status_code, naive.status_code, missing.status_code) == (400, 400, 404)
    assert not EventDelivery.objects.exists()


def test_admin_redelivers_the_selected_events(admin_client, receiver):
    subscribe(receiver.url("/crm"), name="crm")
    order = confirmed_order()
    for message in events_messages(order):
        outbox_handle(message.pk)
    delivery = EventDelivery.objects.get(sequence=2)

    response = admin_client.post(
        reverse("admin:events_eventdelivery_changelist"),
        {
            "action": "redeliver",
            "index": "0",
            "_selected_action": [str(delivery.pk)],
            "post": "yes",  # confirmed
        },
        follow=True,
    )
    send_due()

    assert response.status_code == 200
    assert [r.event["sequence"] for r in receiver.on("/crm")] == [1, 2, 2]


def test_staff_who_may_only_look_at_deliveries_cannot_redeliver(client, receiver):
    # Given a staff user who may view deliveries but not change subscriptions
    viewer = StaffFactory(groups=[])
    viewer.user_permissions.add(Permission.objects.get(codename="view_eventdelivery"))
    client.force_login(viewer)
    subscribe(receiver.url("/crm"), name="crm")
    order = confirmed_order()
    for message in events_messages(order):
        outbox_handle(message.pk)
    delivery = EventDelivery.objects.get(sequence=2)

    # When they try the action
    client.post(
        reverse("admin:events_eventdelivery_changelist"),
        {
            "action": "redeliver",
            "index": "0",
            "_selected_action": [str(delivery.pk)],
            "post": "yes",  # confirmed
        },
    )
    send_due()

    # Then nothing was sent again
    assert [r.event["sequence"] for r in receiver.on("/crm")] == [1, 2]
