"""Delete rows that have served their purpose, a batch at a time: outbox messages done
longer ago than OUTBOX_DONE_RETENTION, idempotency keys older than IDEMPOTENCY_KEY_TTL.

Each batch is one short transaction of its own (at most PRUNE_BATCH_SIZE rows, taken in
index order, rows locked by a relay skipped), so pruning never holds locks for long,
writes its WAL in small pieces and leaves the table's space to autovacuum for reuse. A
run stops after PRUNE_MAX_BATCHES batches; the next one carries on.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.models import DeadLetter, IdempotencyKey, OutboxMessage


@dataclass(frozen=True)
class PruneResult:
    outbox_messages: int
    idempotency_keys: int


def _delete_in_batches(select_ids_sql: str, table: str, params: list[Any]) -> int:
    """DELETE the rows whose ids `select_ids_sql` returns (it ends in LIMIT %s), batch
    after batch, until a batch comes back short or the run's batches are used up."""
    batch_size = settings.PRUNE_BATCH_SIZE
    deleted = 0
    for _ in range(settings.PRUNE_MAX_BATCHES):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN ({select_ids_sql} FOR UPDATE SKIP LOCKED)",  # noqa: S608
                [*params, batch_size],
            )
            count = cursor.rowcount
        deleted += count
        if count < batch_size:
            break
    return deleted


def outbox_done_prune(*, now: datetime | None = None) -> int:
    """Delete outbox messages done before the retention. A message a dead letter still
    points to stays with it. Return how many were deleted."""
    cutoff = (now or timezone.now()) - settings.OUTBOX_DONE_RETENTION
    outbox = OutboxMessage._meta.db_table
    dead_letters = DeadLetter._meta.db_table
    dead_letter_message = DeadLetter._meta.get_field("outbox_message").column
    # A message becomes available before it is done: available_at < cutoff walks the
    # (status, available_at) index from the oldest instead of reading every done row.
    select_ids = (
        f"SELECT message.id FROM {outbox} message "  # noqa: S608
        "WHERE message.status = %s AND message.available_at < %s AND message.done_at < %s "
        f"AND NOT EXISTS (SELECT 1 FROM {dead_letters} letter "
        f"WHERE letter.{dead_letter_message} = message.id) "
        "ORDER BY message.available_at LIMIT %s"
    )
    return _delete_in_batches(select_ids, outbox, [OutboxMessage.Status.DONE, cutoff, cutoff])


def idempotency_keys_prune(*, now: datetime | None = None) -> int:
    """Delete idempotency keys older than IDEMPOTENCY_KEY_TTL. Return how many."""
    cutoff = (now or timezone.now()) - settings.IDEMPOTENCY_KEY_TTL
    table = IdempotencyKey._meta.db_table
    select_ids = f"SELECT id FROM {table} WHERE created_at < %s ORDER BY created_at LIMIT %s"  # noqa: S608
    return _delete_in_batches(select_ids, table, [cutoff])


def expired_rows_prune(*, now: datetime | None = None) -> PruneResult:
    return PruneResult(
        outbox_messages=outbox_done_prune(now=now),
        idempotency_keys=idempotency_keys_prune(now=now),
    )
