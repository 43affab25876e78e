"""Event deliveries in the admin: a failed delivery is re-delivered after a confirmation,
through the scheduler's sweep as every delivery is, once however often the action is
confirmed; filters find it, and its page shows the body as posted. Through a real
receiver on loopback."""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from core.outbox import outbox_handle
from events.models import EventDelivery
from events.services import event_body
from tests.events.conftest import confirmed_order, events_messages, send_due, subscribe

pytestmark = pytest.mark.django_db

DELIVERIES = "/admin/events/eventdelivery/"


@pytest.fixture
def failed_delivery(receiver: Any, settings: Any) -> EventDelivery:
    """The order's first event given up after its only attempt (the receiver answered
    500); the second delivered after it."""
    settings.EVENTS_RETRY_SCHEDULE_SECONDS = ()
    subscribe(receiver.url("/crm"), name="crm")
    receiver.fail_next["/crm"] = 1
    order = confirmed_order()
    for message in events_messages(order):
        outbox_handle(message.pk)
    failed = EventDelivery.objects.get(sequence=1)
    assert failed.status == EventDelivery.Status.FAILED
    return failed


def redeliver(client: Client, *deliveries: EventDelivery, confirm: bool) -> Any:
    data: dict[str, Any] = {
        "action": "redeliver",
        "_selected_action": [str(delivery.pk) for delivery in deliveries],
    }
    if confirm:
        data["post"] = "yes"
    return client.post(DELIVERIES, data, follow=True)


def test_failed_delivery_is_redelivered_after_a_confirmation(
    admin_client, receiver, failed_delivery
):
    # When staff choose the action: a confirmation page, nothing queued
    asked = redeliver(admin_client, failed_delivery, confirm=False)
    send_due()

    assert "Re-deliver these events?" in asked.content.decode()
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == EventDelivery.Status.FAILED
    assert len(receiver.on("/crm")) == 2

    # When they confirm, and the scheduler's sweep runs
    done = redeliver(admin_client, failed_delivery, confirm=True)
    send_due()

    # Then the event was posted again, with its own id, and is delivered
    assert "1 event(s) queued again." in done.content.decode()
    sent = receiver.on("/crm")
    assert [r.event["sequence"] for r in sent] == [1, 2, 1]
    assert sent[2].headers["Idempotency-Key"] == str(failed_delivery.event_id)
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == EventDelivery.Status.DELIVERED


def test_confirming_twice_before_the_sweep_sends_the_event_once(
    admin_client, receiver, failed_delivery
):
    redeliver(admin_client, failed_delivery, confirm=True)
    again = redeliver(admin_client, failed_delivery, confirm=True)
    send_due()

    assert "0 event(s) queued again; 1 pending" in again.content.decode()
    assert [r.event["sequence"] for r in receiver.on("/crm")] == [1, 2, 1]


def test_deliveries_filter_by_status_and_age(admin_client, failed_delivery):
    EventDelivery.objects.filter(pk=failed_delivery.pk).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    change = f"/admin/events/eventdelivery/{failed_delivery.pk}/change/"

    def listed(query: str) -> bool:
        response = admin_client.get(f"{DELIVERIES}?{query}")
        assert response.status_code == 200
        return change in response.content.decode()

    assert listed("status__exact=failed")
    assert not listed("status__exact=delivered")
    assert listed("age=gt1d")
    assert not listed("age=1d")
    assert listed(f"q={failed_delivery.order_id}")


def test_delivery_page_shows_the_body_as_posted(admin_client, failed_delivery):
    page = admin_client.get(f"{DELIVERIES}{failed_delivery.pk}/change/").content.decode()

    body = json.loads(event_body(failed_delivery.event))
    assert f"&quot;id&quot;: &quot;{body['id']}&quot;" in page
    assert "&quot;type&quot;: &quot;order.created&quot;" in page
    assert "HTTP 500" in page
