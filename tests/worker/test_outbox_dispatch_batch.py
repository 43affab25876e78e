"""The relay after commit on a real Redis broker: it claims the listed messages in one
statement and publishes them on one producer, as one pipeline; when the broker dies
midway, the messages of the batch go back to the sweeper at once."""

import base64
import json
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from celery.signals import after_task_publish, before_task_publish
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.celery import app
from core.models import OutboxMessage
from core.outbox import HANDLE_TASK_NAME, outbox_dispatch
from tests.support.redis_server import RedisServer

pytest_plugins = ("tests.support.redis_server", "tests.support.worker")

QUEUE = "events"


def pending_messages(count: int, first: int = 0) -> list[int]:
    messages = OutboxMessage.objects.bulk_create(
        OutboxMessage(
            topic="test.dispatch.batch",
            handler="tests.dispatch.batch",
            queue=QUEUE,
            payload={"n": n},
            dedup_key=f"tests.dispatch.batch:{n}",
        )
        for n in range(first, first + count)
    )
    return [message.pk for message in messages]


def queued_message_ids(broker: RedisServer) -> list[int]:
    """The outbox ids of the handle tasks waiting in the queue, oldest first."""
    bodies = [json.loads(raw) for raw in broker.client().lrange(QUEUE, 0, -1)]
    assert all(body["headers"]["task"] == HANDLE_TASK_NAME for body in bodies)
    # A body is base64 of [args, kwargs, embed]; the one argument is the message id.
    return sorted(json.loads(base64.b64decode(body["body"]))[0][0] for body in bodies)


@pytest.fixture
def producer_acquisitions() -> Iterator[mock.MagicMock]:
    """Count the producers taken from the app's pool (the real pool does the work)."""
    pool = app.producer_pool
    with mock.patch.object(pool, "acquire", wraps=pool.acquire) as acquire:
        yield acquire


def test_dispatch_claims_in_one_statement_and_publishes_on_one_producer(
    db: None, celery_broker: RedisServer, producer_acquisitions: mock.MagicMock
) -> None:
    # Given 5 pending messages
    ids = pending_messages(5)

    # When the relay dispatches them
    with CaptureQueriesContext(connection) as queries:
        sent = outbox_dispatch(ids)

    # Then one statement claimed all 5, one producer published them, and Redis holds them
    assert sent == 5
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["UPDATE"]
    assert producer_acquisitions.call_count == 1
    assert queued_message_ids(celery_broker) == ids
    messages = OutboxMessage.objects.filter(pk__in=ids)
    assert {message.status for message in messages} == {OutboxMessage.Status.DISPATCHED}
    assert all(
        message.dispatched_at is not None and message.available_at > message.dispatched_at
        for message in messages
    )

    # And a second relay given the same ids finds nothing left to send
    assert outbox_dispatch(ids) == 0
    assert len(queued_message_ids(celery_broker)) == 5


def reads_processed(client: Any) -> int:
    """How many times the broker has read requests from its clients (a pipeline: once)."""
    return int(client.info("stats")["total_reads_processed"])


def test_on_redis_the_messages_of_one_dispatch_go_in_one_round_trip(
    db: None, celery_broker: RedisServer
) -> None:
    # Given a relay that has published before (its connection is open, the queue's
    # binding declared), and 5 pending messages
    outbox_dispatch(pending_messages(1))
    ids = pending_messages(5, first=1)
    stats = celery_broker.client()
    before = reads_processed(stats)

    # When the relay dispatches them
    sent = outbox_dispatch(ids)

    # Then the broker read them in one request (the producer's batch sent them as one
    # pipeline; one at a time would be 5 reads), besides the INFO that counts
    assert reads_processed(stats) - before == 2
    assert sent == 5
    assert queued_message_ids(celery_broker)[1:] == ids


def test_broker_dying_midway_leaves_every_message_of_the_batch_pending_for_the_sweeper(
    db: None, celery_broker: RedisServer
) -> None:
    # Given 5 pending messages, and a broker that dies once 2 have been handed over
    ids = pending_messages(5)
    attempts: list[int] = []

    def count_attempt(headers: dict[str, Any], **kwargs: Any) -> None:
        attempts.append(headers["id"])

    def kill_after_two(**kwargs: Any) -> None:
        if len(attempts) == 2:
            celery_broker.stop()

    before_task_publish.connect(count_attempt, weak=False)
    after_task_publish.connect(kill_after_two, weak=False)
    try:
        started = time.monotonic()
        sent = outbox_dispatch(ids)
        elapsed = time.monotonic() - started
    finally:
        before_task_publish.disconnect(count_attempt)
        after_task_publish.disconnect(kill_after_two)

    # Then all 5 were handed to the producer's batch, which could not send them at its end
    assert len(attempts) == 5
    assert sent == 0
    # And all 5 are pending now, for the sweeper
    statuses = dict(OutboxMessage.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert [statuses[pk] for pk in ids] == ["pending"] * 5
    now = timezone.now()
    assert all(message.available_at <= now for message in OutboxMessage.objects.filter(pk__in=ids))
    # And the request did not wait for the dead broker (its connect timeout is 2 s)
    assert elapsed < 2

    # And once the broker is back, the sweeper's dispatch sends them
    celery_broker.start()
    assert outbox_dispatch(ids) == 5
    assert queued_message_ids(celery_broker) == ids
