"""Celery tasks for what every app shares. Tasks are thin: ids in, a service call."""

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from core import log_context
from core.idempotency import idempotency_keys_purge
from core.metric_samples import metric_samples_take
from core.metrics import WORKER_HEARTBEAT
from core.outbox import (
    HANDLE_TASK_NAME,
    dead_letter_record,
    outbox_attempt_failed,
    outbox_attempt_started,
    outbox_handle,
    outbox_sweep,
    retry_delay_seconds,
)
from core.pruning import outbox_done_prune

logger = logging.getLogger(__name__)


class ReliableTask(Task):
    """acks_late, redelivered if the worker dies, dead-lettered when it finally fails."""

    acks_late = True
    reject_on_worker_lost = True

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        dead_letter_record(
            task_name=self.name,
            task_id=task_id,
            args=list(args or []),
            kwargs=dict(kwargs or {}),
            error=repr(exc),
            traceback=str(einfo or ""),
        )


@shared_task(bind=True, name=HANDLE_TASK_NAME, base=ReliableTask, max_retries=None)
def outbox_handle_task(self: Task, message_id: int) -> None:
    """Run one outbox message's handler; retry with backoff and jitter, then dead-letter."""
    attempt = outbox_attempt_started(message_id)
    try:
        with log_context.bound(task_id=self.request.id or ""):
            outbox_handle(message_id)
    except Exception as error:
        if attempt >= settings.OUTBOX_MAX_ATTEMPTS:
            logger.error("Outbox message %s failed %s times: %r", message_id, attempt, error)
            dead_letter_record(
                task_name=HANDLE_TASK_NAME,
                task_id=self.request.id or "",
                args=[message_id],
                kwargs={},
                error=repr(error),
                outbox_message_id=message_id,
            )
            return
        delay = retry_delay_seconds(attempt)
        outbox_attempt_failed(message_id, error=repr(error), retry_in=delay)
        logger.warning(
            "Outbox message %s attempt %s failed (%r); retry in %ss",
            message_id,
            attempt,
            error,
            delay,
        )
        raise self.retry(exc=error, countdown=delay) from error


@shared_task(name="oms.core.outbox_sweep", acks_late=True, ignore_result=True)
def outbox_sweep_task() -> int:
    return outbox_sweep()


@shared_task(name="oms.core.purge_idempotency_keys", acks_late=True, ignore_result=True)
def purge_idempotency_keys_task() -> int:
    return idempotency_keys_purge()


@shared_task(name="oms.core.prune_done_outbox", acks_late=True, ignore_result=True)
def prune_done_outbox_task() -> int:
    return outbox_done_prune()


@shared_task(name="oms.core.worker_heartbeat", acks_late=True, ignore_result=True, expires=60)
def worker_heartbeat_task() -> None:
    """Note that a worker ran a task the scheduler sent: the "no worker heartbeats"
    alert watches this timestamp."""
    WORKER_HEARTBEAT.set_to_current_time()


@shared_task(name="oms.core.take_metric_samples", acks_late=True, ignore_result=True, expires=60)
def metric_samples_take_task() -> int:
    """Keep a sample of the operations page's series (and forget the oldest)."""
    return metric_samples_take()
