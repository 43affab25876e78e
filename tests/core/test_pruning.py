"""Pruning done outbox messages and expired idempotency keys, in batches."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.models import DeadLetter, IdempotencyKey, OutboxMessage
from core.pruning import outbox_done_prune
from tests.factories import UserFactory

Status = OutboxMessage.Status


def _message(name: str, status: str, *, age: timedelta, done: bool = False) -> OutboxMessage:
    at = timezone.now() - age
    return OutboxMessage.objects.create(
        topic="order.created",
        handler="test",
        queue="default",
        payload={},
        dedup_key=name,
        status=status,
        available_at=at,
        done_at=at + timedelta(seconds=1) if done else None,
    )


def _key(name: str, *, age: timedelta) -> None:
    key = IdempotencyKey.objects.create(
        user=UserFactory(),
        key=name,
        request_method="POST",
        request_path="/api/v1/orders/",
        request_fingerprint="f" * 64,
        status=IdempotencyKey.Status.COMPLETED,
    )
    IdempotencyKey.objects.filter(pk=key.pk).update(created_at=timezone.now() - age)


@pytest.mark.django_db
def test_prune_deletes_done_messages_past_retention_and_expired_keys_in_batches(settings):
    # given: retention 48 h, batches of 2
    settings.OUTBOX_DONE_RETENTION = timedelta(hours=48)
    settings.PRUNE_BATCH_SIZE = 2
    old, recent = timedelta(hours=72), timedelta(hours=1)
    for number in range(5):
        _message(f"done-old-{number}", Status.DONE, age=old, done=True)
    _message("done-recent", Status.DONE, age=recent, done=True)
    _message("pending-old", Status.PENDING, age=old)
    _message("dead-old", Status.DEAD, age=old)
    redriven = _message("done-old-with-dead-letter", Status.DONE, age=old, done=True)
    DeadLetter.objects.create(task_name="oms.test", error="boom", outbox_message=redriven)
    _key("old", age=timedelta(hours=25))
    _key("recent", age=timedelta(hours=23))
    out = StringIO()

    # when
    call_command("prune_expired_rows", stdout=out)

    # then
    assert sorted(OutboxMessage.objects.values_list("dedup_key", flat=True)) == [
        "dead-old",
        "done-old-with-dead-letter",
        "done-recent",
        "pending-old",
    ]
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["recent"]
    assert "Pruned 5 done outbox message(s) and 1 idempotency key(s)." in out.getvalue()


@pytest.mark.django_db
def test_a_run_stops_after_its_batches_and_the_next_carries_on(settings):
    # given
    settings.PRUNE_BATCH_SIZE = 2
    settings.PRUNE_MAX_BATCHES = 1
    for number in range(3):
        _message(f"done-{number}", Status.DONE, age=timedelta(days=5), done=True)

    # when / then
    assert outbox_done_prune() == 2
    assert outbox_done_prune() == 1
    assert not OutboxMessage.objects.exists()
