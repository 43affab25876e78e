"""Transactional outbox: work recorded with the state change, delivered by workers.

Apps register handlers for topics at start-up (`outbox_handler`). `outbox_publish`
writes one OutboxMessage per handler inside the caller's transaction and, once that
transaction commits, hands the messages to Celery. If the process dies first, or the
broker is down, the messages wait in the table and `outbox_sweep` dispatches them.
A handler must be idempotent: a message can be handled more than once.
"""

import logging
import random
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from core import log_context, tracing
from core.metrics import DEAD_LETTERS
from core.models import DeadLetter, OutboxMessage

logger = logging.getLogger(__name__)

HANDLE_TASK_NAME = "oms.core.outbox_handle"
SWEEP_BATCH_SIZE = 200


@dataclass(frozen=True)
class OutboxHandler:
    name: str
    queue: str
    func: Callable[[dict[str, Any]], None]
    # Asked at publish time: does this handler have work for the topic at all? Lets a
    # handler with nothing to do (no subscribers) cost the state change nothing.
    wanted: Callable[[str], bool] | None = None


_handlers_by_topic: dict[str, list[OutboxHandler]] = {}
_handlers_by_name: dict[str, OutboxHandler] = {}


def outbox_handler(
    *topics: str, name: str, queue: str, wanted: Callable[[str], bool] | None = None
) -> Callable[[Callable[[dict[str, Any]], None]], Callable[[dict[str, Any]], None]]:
    """Register `func(payload)` to run, on a worker of `queue`, for each of `topics`
    (only when `wanted(topic)` says so, if given)."""

    def register(func: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        handler = OutboxHandler(name=name, queue=queue, func=func, wanted=wanted)
        _handlers_by_name[name] = handler
        for topic in topics:
            registered = _handlers_by_topic.setdefault(topic, [])
            if all(existing.name != name for existing in registered):
                registered.append(handler)
        return func

    return register


def _handlers_wanting(topic: str) -> list[OutboxHandler]:
    return [
        handler
        for handler in _handlers_by_topic.get(topic, [])
        if handler.wanted is None or handler.wanted(topic)
    ]


def _dedup_key(handler: OutboxHandler, key: str) -> str:
    # One message per handler and event, within the column's 255 characters.
    return f"{handler.name}:{key}"[:255]


def outbox_has_work(topic: str) -> bool:
    """Whether publishing the topic now would write any message (a registered handler
    wants it)."""
    return bool(_handlers_wanting(topic))


def outbox_rows(*, topic: str, payload: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The messages `outbox_publish` would write, as JSON-ready columns, for a caller that
    inserts them in its own statement (ON CONFLICT (dedup_key) DO NOTHING, as
    `outbox_publish` ignores a repeated key) and then hands the pending rows' ids to
    `outbox_dispatch_on_commit`."""
    handlers = _handlers_wanting(topic)
    if not handlers:
        return []
    now = timezone.now().isoformat()
    trace_context = tracing.trace_context()
    request_id = log_context.current("request_id")
    return [
        {
            "topic": topic,
            "handler": handler.name,
            "queue": handler.queue,
            "payload": payload,
            "dedup_key": _dedup_key(handler, key),
            "status": OutboxMessage.Status.PENDING.value,
            "request_id": request_id,
            "trace_context": trace_context,
            "available_at": now,
            "created_at": now,
        }
        for handler in handlers
    ]


def outbox_dispatch_on_commit(message_ids: list[int]) -> None:
    """Hand the messages to the broker once the current transaction commits (at once in
    autocommit), as `outbox_publish` does for those it writes."""
    if message_ids:
        transaction.on_commit(lambda: outbox_dispatch(message_ids))


def outbox_publish(*, topic: str, payload: dict[str, Any], key: str) -> list[int]:
    """Record the topic's work for every registered handler. Call inside the transaction
    of the state change; `key` identifies the event (a repeated key is written once)."""
    handlers = _handlers_wanting(topic)
    if not handlers:
        return []
    now = timezone.now()
    dedup_keys = [_dedup_key(handler, key) for handler in handlers]
    trace_context = tracing.trace_context()
    OutboxMessage.objects.bulk_create(
        [
            OutboxMessage(
                topic=topic,
                handler=handler.name,
                queue=handler.queue,
                payload=payload,
                dedup_key=dedup_key,
                request_id=log_context.current("request_id"),
                trace_context=trace_context,
                available_at=now,
            )
            for handler, dedup_key in zip(handlers, dedup_keys, strict=True)
        ],
        ignore_conflicts=True,
    )
    # ignore_conflicts leaves primary keys unset: look the rows up.
    ids = list(
        OutboxMessage.objects.filter(
            dedup_key__in=dedup_keys, status=OutboxMessage.Status.PENDING
        ).values_list("pk", flat=True)
    )
    transaction.on_commit(lambda: outbox_dispatch(ids))
    return ids


# Claim, in one statement, the listed messages still pending: rows another relay or the
# sweeper holds are theirs to send (SKIP LOCKED, taken in primary-key order, so two relays
# given the same ids never wait on each other).
_CLAIM_SQL = f"""
    UPDATE {OutboxMessage._meta.db_table}
    SET status = %(dispatched)s, dispatched_at = %(now)s, available_at = %(lease_end)s
    WHERE id IN (
        SELECT id FROM {OutboxMessage._meta.db_table}
        WHERE id = ANY(%(ids)s) AND status = %(pending)s
        ORDER BY id
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, queue
"""  # noqa: S608 (the table name is the model's; every value is a parameter)


def _send_claimed(claimed: list[tuple[int, str]], now: datetime) -> int:
    """Hand claimed (id, queue) messages to the broker on one producer; return how many
    went. When a send fails (the broker is down), give that message and the ones after it
    back to the sweeper at once rather than fail on each.

    On Redis the producer batches (kombu's `Producer.batch`): the messages go out together
    in one pipeline when the batch ends, on one client, in one round trip. Until then none
    has gone, so a failure anywhere in a batch gives every message back (a pipeline cut
    off midway may have queued some of them: their handlers run twice at worst, and
    handle a message once). Other brokers (RabbitMQ) publish each message at once."""
    if not claimed:
        return 0
    # By name: core.tasks (registered at start-up by CoreConfig) imports this module.
    handle_task = current_app.tasks[HANDLE_TASK_NAME]
    # Eager (tests) runs each task inline inside apply_async, and a handler may dispatch
    # in turn: hold no pooled producer across that.
    producing = (
        nullcontext(None)
        if current_app.conf.task_always_eager
        else current_app.producer_or_acquire()
    )
    sent = 0  # known to have gone: none of a batch until it ends
    try:
        with producing as producer:
            batching = producer is not None and producer.supports_batch_publish
            # Sized so that nothing is flushed before the end of the batch.
            batch = (
                producer.batch(max_size=8 * len(claimed))
                if producer is not None and batching
                else nullcontext()
            )
            with batch:
                for message_id, queue in claimed:
                    handle_task.apply_async(
                        args=[message_id], queue=queue, retry=False, producer=producer
                    )
                    if not batching:
                        sent += 1
            sent = len(claimed)
    except Exception as error:  # broker down: the sweeper will dispatch them later
        unsent = [message_id for message_id, _ in claimed[sent:]]
        if unsent:
            logger.warning("Outbox messages %s not dispatched: %s", unsent, error)
            OutboxMessage.objects.filter(
                pk__in=unsent, status=OutboxMessage.Status.DISPATCHED
            ).update(status=OutboxMessage.Status.PENDING, available_at=now)
        else:  # all handed over; releasing the producer failed
            logger.warning("Outbox producer not released cleanly: %s", error)
    return sent


def outbox_dispatch(message_ids: Iterable[int]) -> int:
    """Hand pending messages to the broker (best effort, right after commit): claim them
    in one statement, publish them on one producer."""
    ids = list(message_ids)
    if not ids:
        return 0
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "dispatched": OutboxMessage.Status.DISPATCHED.value,
                "pending": OutboxMessage.Status.PENDING.value,
                "now": now,
                "lease_end": now + settings.OUTBOX_REDISPATCH_AFTER,
                "ids": ids,
            },
        )
        claimed = sorted(cursor.fetchall())
    return _send_claimed(claimed, now)


def outbox_sweep(*, now: datetime | None = None) -> int:
    """Dispatch what is due: pending messages the relay missed, and dispatched ones
    whose lease ran out (lost by the broker or a dead worker). Safe to run concurrently."""
    now = now or timezone.now()
    lease = settings.OUTBOX_REDISPATCH_AFTER
    with transaction.atomic():
        due = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(
                status__in=[OutboxMessage.Status.PENDING, OutboxMessage.Status.DISPATCHED],
                available_at__lte=now,
            )
            .order_by("available_at", "pk")[:SWEEP_BATCH_SIZE]
        )
        OutboxMessage.objects.filter(pk__in=[m.pk for m in due]).update(
            status=OutboxMessage.Status.DISPATCHED, dispatched_at=now, available_at=now + lease
        )
    return _send_claimed([(message.pk, message.queue) for message in due], now)


def outbox_handle(message_id: int) -> bool:
    """Run the message's handler unless it is done. Return False when there was nothing
    to do. A handler's exception propagates (the task retries it)."""
    message = OutboxMessage.objects.filter(pk=message_id).first()
    if message is None or message.status in (
        OutboxMessage.Status.DONE,
        OutboxMessage.Status.DEAD,
    ):
        return False
    handler = _handlers_by_name.get(message.handler)
    if handler is None:
        raise LookupError(f"No outbox handler named {message.handler!r}")
    order_id = message.payload.get("order_id", "") if isinstance(message.payload, dict) else ""
    with (
        log_context.bound(
            outbox_message_id=message.pk, request_id=message.request_id, order_id=order_id
        ),
        tracing.outbox_span(
            f"outbox {message.handler}",
            stored_context=message.trace_context or {},
            attributes={
                "oms.outbox.message_id": message.pk,
                "oms.outbox.topic": message.topic,
                "oms.outbox.handler": message.handler,
                "oms.order_id": str(order_id),
            },
        ),
    ):
        handler.func(message.payload)
    OutboxMessage.objects.filter(pk=message.pk).exclude(status=OutboxMessage.Status.DEAD).update(
        status=OutboxMessage.Status.DONE, done_at=timezone.now(), last_error=""
    )
    return True


def retry_delay_seconds(attempt: int) -> int:
    """Exponential backoff with full jitter, capped."""
    cap = settings.OUTBOX_RETRY_BACKOFF_MAX_SECONDS
    return int(random.uniform(1, min(cap, 2 ** min(attempt + 1, 16))))  # noqa: S311


def outbox_attempt_failed(message_id: int, *, error: str, retry_in: int) -> None:
    """Note a failed attempt; keep the lease past the retry so the sweeper waits."""
    now = timezone.now()
    OutboxMessage.objects.filter(pk=message_id).exclude(
        status__in=[OutboxMessage.Status.DONE, OutboxMessage.Status.DEAD]
    ).update(
        last_error=error[:2000],
        available_at=now + timedelta(seconds=retry_in) + settings.OUTBOX_REDISPATCH_AFTER,
    )


def outbox_attempt_started(message_id: int) -> int:
    """Count an attempt; return the count."""
    OutboxMessage.objects.filter(pk=message_id).update(attempts=F("attempts") + 1)
    attempts = OutboxMessage.objects.filter(pk=message_id).values_list("attempts", flat=True)
    return attempts.first() or 0


def dead_letter_record(
    *,
    task_name: str,
    task_id: str,
    args: list[Any],
    kwargs: dict[str, Any],
    error: str,
    traceback: str = "",
    outbox_message_id: int | None = None,
) -> DeadLetter:
    with transaction.atomic():
        transaction.on_commit(lambda: DEAD_LETTERS.labels(task=task_name).inc())
        if outbox_message_id is not None:
            OutboxMessage.objects.filter(pk=outbox_message_id).exclude(
                status=OutboxMessage.Status.DONE
            ).update(status=OutboxMessage.Status.DEAD, last_error=error[:2000])
        return DeadLetter.objects.create(
            task_name=task_name,
            task_id=task_id,
            args=args,
            kwargs=kwargs,
            error=error[:5000],
            traceback=traceback[:20000],
            outbox_message_id=outbox_message_id
            if outbox_message_id is not None
            and OutboxMessage.objects.filter(pk=outbox_message_id).exists()
            else None,
        )


def _outbox_message_revive(message_id: int, now: datetime) -> bool:
    """Put a dead message back to pending with a fresh attempt count; its dead letters
    count as re-driven. False when it is not dead (re-driven already, or done)."""
    revived = OutboxMessage.objects.filter(pk=message_id, status=OutboxMessage.Status.DEAD).update(
        status=OutboxMessage.Status.PENDING, available_at=now, attempts=0, last_error=""
    )
    if revived:
        DeadLetter.objects.filter(outbox_message_id=message_id, redriven_at__isnull=True).update(
            redriven_at=now
        )
    return bool(revived)


def outbox_message_redrive(*, message_id: int) -> bool:
    """Send a dead outbox message again, through the relay and the handler task as when
    it was first written. Once however often it is asked while it is pending: False
    when it was not dead."""
    with transaction.atomic():
        revived = _outbox_message_revive(message_id, timezone.now())
    if revived:
        outbox_dispatch([message_id])
    return revived


def dead_letter_redrive(*, dead_letter_id: int) -> bool:
    """Send a dead task again, once: an outbox message goes back to pending and is
    dispatched (as `outbox_message_redrive`); any other task is re-sent with its
    arguments. False when the dead letter was re-driven before."""
    now = timezone.now()
    with transaction.atomic():
        dead = (
            DeadLetter.objects.select_for_update()
            .filter(pk=dead_letter_id, redriven_at__isnull=True)
            .first()
        )
        if dead is None:
            return False
        DeadLetter.objects.filter(pk=dead.pk).update(redriven_at=now)
        if dead.outbox_message_id is None:
            # Inside the transaction: a send that fails leaves the letter to re-drive.
            current_app.send_task(dead.task_name, args=dead.args, kwargs=dead.kwargs)
            return True
        _outbox_message_revive(dead.outbox_message_id, now)
    outbox_dispatch([dead.outbox_message_id])
    return True
