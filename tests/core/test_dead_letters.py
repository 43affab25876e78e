"""A handler that keeps failing: retried with backoff, dead-lettered after
OUTBOX_MAX_ATTEMPTS, and re-driven from the admin once the fault is gone.

Celery is eager here, so a retry runs at once (its countdown is only recorded).
"""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from core.models import DeadLetter, OutboxMessage
from core.outbox import (
    HANDLE_TASK_NAME,
    dead_letter_redrive,
    outbox_dispatch,
    outbox_handler,
    outbox_publish,
    outbox_sweep,
)
from core.tasks import outbox_handle_task
from tests.factories import StaffFactory

FLAKY_TOPIC = "test.outbox.flaky"
FLAKY_HANDLER = "tests.outbox.flaky"
MAX_ATTEMPTS = 3
ADMIN_CHANGELIST = "/admin/core/deadletter/"


class WarehouseDown(Exception):
    pass


class Fault:
    """How many more calls of the flaky handler fail, and what it saw on each call."""

    ALWAYS = 1_000_000

    def __init__(self) -> None:
        self.failures_left = 0
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.failures_left = 0
            self.calls.clear()


fault = Fault()


@outbox_handler(FLAKY_TOPIC, name=FLAKY_HANDLER, queue="events")
def _flaky(payload: dict[str, Any]) -> None:
    message = OutboxMessage.objects.get(dedup_key=f"{FLAKY_HANDLER}:{payload['key']}")
    with fault.lock:
        fault.calls.append(
            {
                "at": timezone.now(),
                "attempts": message.attempts,
                "status": message.status,
                "available_at": message.available_at,
                "last_error": message.last_error,
            }
        )
        if fault.failures_left > 0:
            fault.failures_left -= 1
            raise WarehouseDown(f"call {len(fault.calls)} failed")


@pytest.fixture(autouse=True)
def _fault_reset(settings: Any) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = MAX_ATTEMPTS
    fault.reset()


def publish_and_dispatch(key: str) -> OutboxMessage:
    (message_id,) = outbox_publish(topic=FLAKY_TOPIC, payload={"key": key}, key=key)
    outbox_dispatch([message_id])
    return OutboxMessage.objects.get(pk=message_id)


@pytest.fixture
def dead_message(db: None) -> OutboxMessage:
    fault.failures_left = Fault.ALWAYS
    message = publish_and_dispatch("dead")
    assert message.status == OutboxMessage.Status.DEAD
    fault.reset()  # the fault is gone; the message stays dead until re-driven
    return message


@pytest.fixture
def admin_client_with_redrive(db: None) -> Client:
    """A staff user allowed to look at dead letters and re-drive them."""
    user = StaffFactory()
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="core",
            codename__in=["view_deadletter", "change_deadletter"],
        )
    )
    client = Client()
    client.force_login(user)
    return client


def redrive(client: Client, *dead_letters: DeadLetter) -> Any:
    return client.post(
        ADMIN_CHANGELIST,
        # "post": the answer of the confirmation page the action shows first.
        {
            "action": "redrive",
            "_selected_action": [dead.pk for dead in dead_letters],
            "post": "yes",
        },
        follow=True,
    )


def test_failing_handler_is_retried_with_backoff_then_dead_lettered(db):
    fault.failures_left = Fault.ALWAYS

    message = publish_and_dispatch("keeps-failing")

    assert len(fault.calls) == MAX_ATTEMPTS
    assert [call["attempts"] for call in fault.calls] == [1, 2, 3]
    lease = timedelta(seconds=300)
    for previous, call in zip(fault.calls, fault.calls[1:], strict=False):
        # Each failure pushed the message out by the backoff plus the lease, so the
        # sweeper leaves it to the scheduled retry.
        waited = call["available_at"] - previous["at"]
        assert lease + timedelta(seconds=1) <= waited <= lease + timedelta(seconds=301)
        assert call["status"] == OutboxMessage.Status.DISPATCHED
        assert call["last_error"].startswith("WarehouseDown(")
    assert message.status == OutboxMessage.Status.DEAD
    assert message.attempts == MAX_ATTEMPTS
    assert "call 3 failed" in message.last_error
    assert message.done_at is None

    dead = DeadLetter.objects.get()
    assert dead.outbox_message_id == message.pk
    assert dead.task_name == HANDLE_TASK_NAME
    assert dead.args == [message.pk]
    assert dead.error == "WarehouseDown('call 3 failed')"
    assert dead.redriven_at is None


def test_handler_that_recovers_before_the_limit_is_done_without_a_dead_letter(db):
    fault.failures_left = 1

    message = publish_and_dispatch("recovers")

    assert len(fault.calls) == 2
    assert message.status == OutboxMessage.Status.DONE
    assert message.attempts == 2
    assert message.last_error == ""
    assert not DeadLetter.objects.exists()


def test_dead_message_is_not_picked_up_by_the_sweeper(dead_message):
    assert outbox_sweep(now=timezone.now() + timedelta(days=1)) == 0
    assert fault.calls == []


def test_admin_redrive_puts_the_message_back_and_it_succeeds(
    dead_message, admin_client_with_redrive
):
    dead = DeadLetter.objects.get()
    before = timezone.now()

    response = redrive(admin_client_with_redrive, dead)

    assert response.status_code == 200
    assert "Re-drove 1 task(s)." in response.content.decode()
    assert len(fault.calls) == 1
    assert fault.calls[0]["attempts"] == 1  # the count starts afresh
    dead_message.refresh_from_db()
    assert dead_message.status == OutboxMessage.Status.DONE
    assert dead_message.attempts == 1
    dead.refresh_from_db()
    assert dead.redriven_at is not None
    assert dead.redriven_at >= before
    assert DeadLetter.objects.count() == 1


def test_redrive_while_still_failing_dead_letters_it_again(dead_message):
    dead = DeadLetter.objects.get()
    fault.failures_left = Fault.ALWAYS

    assert dead_letter_redrive(dead_letter_id=dead.pk) is True

    assert len(fault.calls) == MAX_ATTEMPTS
    dead_message.refresh_from_db()
    assert dead_message.status == OutboxMessage.Status.DEAD
    assert DeadLetter.objects.count() == 2
    assert DeadLetter.objects.filter(redriven_at__isnull=True).count() == 1


def test_a_dead_letter_is_redriven_once(dead_message, admin_client_with_redrive):
    dead = DeadLetter.objects.get()
    redrive(admin_client_with_redrive, dead)

    response = redrive(admin_client_with_redrive, dead)

    assert "Re-drove 0 task(s); 1 were re-driven before." in response.content.decode()
    assert len(fault.calls) == 1
    assert dead_letter_redrive(dead_letter_id=dead.pk) is False


def test_staff_without_change_permission_cannot_redrive(dead_message):
    viewer = StaffFactory()
    viewer.user_permissions.add(
        Permission.objects.get(content_type__app_label="core", codename="view_deadletter")
    )
    client = Client()
    client.force_login(viewer)
    dead = DeadLetter.objects.get()

    listing = client.get(ADMIN_CHANGELIST)
    redrive(client, dead)

    assert listing.status_code == 200
    assert b'value="redrive"' not in listing.content
    dead_message.refresh_from_db()
    assert dead_message.status == OutboxMessage.Status.DEAD
    assert fault.calls == []


def test_task_failing_outside_a_handler_leaves_a_dead_letter(db):
    # Not even the attempt can be counted: the task itself fails, and on_failure keeps it.
    outbox_handle_task.apply(args=["not-a-message-id"])

    dead = DeadLetter.objects.get()
    assert dead.task_name == HANDLE_TASK_NAME
    assert dead.args == ["not-a-message-id"]
    assert dead.outbox_message_id is None
    assert "not-a-message-id" in dead.error
    assert dead.traceback
