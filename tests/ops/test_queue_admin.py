"""The outbox and dead-letter admins as staff use them: filters, search, readable
payloads, and a re-drive that asks first, goes through the relay and the handler task
as the system does (Celery is eager here), and acts once however often it is confirmed."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from core.models import DeadLetter, OutboxMessage
from core.outbox import outbox_dispatch, outbox_handler, outbox_publish
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db

TOPIC = "test.ops.redrive"
HANDLER = "tests.ops.redrive"
OUTBOX = "/admin/core/outboxmessage/"
DEAD_LETTERS = "/admin/core/deadletter/"


class Handled:
    """Whether the handler fails, and the payload of each call that succeeded."""

    def __init__(self) -> None:
        self.failing = False
        self.payloads: list[dict[str, Any]] = []
        self.lock = threading.Lock()


handled = Handled()


@outbox_handler(TOPIC, name=HANDLER, queue="events")
def _handle(payload: dict[str, Any]) -> None:
    with handled.lock:
        if handled.failing:
            raise ConnectionError("the warehouse is down")
        handled.payloads.append(payload)


@pytest.fixture(autouse=True)
def _handler_state(settings: Any) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = 2
    handled.failing = False
    handled.payloads.clear()


@pytest.fixture
def dead_message() -> OutboxMessage:
    """A message whose handler failed every attempt; the fault is gone since."""
    handled.failing = True
    payload = {"order_id": "4f1c2b7e-0000-4000-8000-000000000001", "note": "<b>bold</b>"}
    (message_id,) = outbox_publish(topic=TOPIC, payload=payload, key="one")
    outbox_dispatch([message_id])
    handled.failing = False
    message = OutboxMessage.objects.get(pk=message_id)
    assert message.status == OutboxMessage.Status.DEAD
    return message


def staff(*codenames: str) -> Client:
    user = StaffFactory(groups=[])
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="core", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator() -> Client:
    return staff("view_outboxmessage", "view_deadletter", "change_deadletter")


def act(client: Client, url: str, action: str, pks: list[int], *, confirm: bool) -> Any:
    data: dict[str, Any] = {"action": action, "_selected_action": pks}
    if confirm:
        data["post"] = "yes"
    return client.post(url, data, follow=True)


def test_redrive_of_a_dead_message_asks_first_then_the_handler_runs_it(dead_message, operator):
    # When staff choose the action: a confirmation page, and nothing happens yet
    asked = act(operator, OUTBOX, "redrive", [dead_message.pk], confirm=False)

    assert asked.status_code == 200
    assert "Re-drive dead outbox messages?" in asked.content.decode()
    assert 'name="post" value="yes"' in asked.content.decode()
    dead_message.refresh_from_db()
    assert dead_message.status == OutboxMessage.Status.DEAD
    assert handled.payloads == []

    # When they confirm: the relay hands it to the handler task, which handles it
    done = act(operator, OUTBOX, "redrive", [dead_message.pk], confirm=True)

    assert "Re-drove 1 message(s)." in done.content.decode()
    dead_message.refresh_from_db()
    assert dead_message.status == OutboxMessage.Status.DONE
    assert dead_message.attempts == 1
    assert handled.payloads == [dead_message.payload]
    # Its dead letter counts as re-driven
    assert DeadLetter.objects.get().redriven_at is not None


def test_a_confirmed_redrive_sent_twice_handles_the_message_once(dead_message, operator):
    act(operator, OUTBOX, "redrive", [dead_message.pk], confirm=True)
    again = act(operator, OUTBOX, "redrive", [dead_message.pk], confirm=True)

    assert "Re-drove 0 message(s); 1 were not dead." in again.content.decode()
    assert len(handled.payloads) == 1


def test_redriving_a_dead_letter_of_the_message_goes_the_same_way(dead_message, operator):
    dead = DeadLetter.objects.get()

    act(operator, DEAD_LETTERS, "redrive", [dead.pk], confirm=True)
    act(operator, OUTBOX, "redrive", [dead_message.pk], confirm=True)

    dead_message.refresh_from_db()
    assert dead_message.status == OutboxMessage.Status.DONE
    assert len(handled.payloads) == 1


def test_a_message_that_dies_again_gets_a_new_dead_letter(dead_message, operator):
    handled.failing = True

    act(operator, OUTBOX, "redrive", [dead_message.pk], confirm=True)

    dead_message.refresh_from_db()
    assert dead_message.status == OutboxMessage.Status.DEAD
    assert DeadLetter.objects.count() == 2
    assert DeadLetter.objects.filter(redriven_at__isnull=True).count() == 1


def test_staff_who_may_only_look_get_no_redrive(dead_message):
    viewer = staff("view_outboxmessage", "view_deadletter")

    listing = viewer.get(OUTBOX)
    act(viewer, OUTBOX, "redrive", [dead_message.pk], confirm=True)

    assert listing.status_code == 200
    assert 'value="redrive"' not in listing.content.decode()
    dead_message.refresh_from_db()
    assert dead_message.status == OutboxMessage.Status.DEAD


def test_outbox_list_filters_by_status_and_age_and_finds_by_order_id(dead_message, operator):
    OutboxMessage.objects.filter(pk=dead_message.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )

    def listed(query: str) -> bool:
        response = operator.get(f"{OUTBOX}?{query}")
        assert response.status_code == 200
        return f"/admin/core/outboxmessage/{dead_message.pk}/change/" in response.content.decode()

    assert listed("status__exact=dead")
    assert not listed("status__exact=pending")
    assert listed("age=gt1h")
    assert not listed("age=1h")
    assert listed("handler=tests.ops.redrive")
    assert listed("q=4f1c2b7e-0000-4000-8000-000000000001")
    assert not listed("q=00000000-0000-4000-8000-00000000ffff")


def test_outbox_message_page_shows_the_payload_as_indented_escaped_json(dead_message, operator):
    page = operator.get(f"{OUTBOX}{dead_message.pk}/change/").content.decode()

    assert "&quot;note&quot;: &quot;&lt;b&gt;bold&lt;/b&gt;&quot;" in page
    assert "<b>bold</b>" not in page
    assert "{\n  &quot;note&quot;" in page


def test_dead_letter_page_shows_arguments_payload_and_the_error(dead_message, operator):
    dead = DeadLetter.objects.get()

    page = operator.get(f"{DEAD_LETTERS}{dead.pk}/change/").content.decode()
    listing = operator.get(f"{DEAD_LETTERS}?redriven_at__isempty=1&age=1h").content.decode()

    assert f"&quot;args&quot;: [\n    {dead_message.pk}\n  ]" in page
    assert "&quot;order_id&quot;: &quot;4f1c2b7e-0000-4000-8000-000000000001&quot;" in page
    assert "ConnectionError" in page
    assert f"/admin/core/deadletter/{dead.pk}/change/" in listing
