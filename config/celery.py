"""The Celery app. Tasks live in each app's tasks.py; configuration in settings (CELERY_*).

On RabbitMQ the task queues (settings.TASK_QUEUES) are durable quorum queues
(`broker_queue_options`): replicated by Raft, they keep their messages through a broker
restart or the loss of a minority of nodes. Quorum queues have no global QoS (Celery
sees the quorum queues and sets prefetch per consumer: `worker_detect_quorum_queues`,
on by default) and no priorities; a countdown (a task's retry backoff) travels through
Celery's native delayed delivery exchanges, which need topic exchanges, not direct ones.
A queue's type cannot change once it exists: switching a broker that has the classic
queues of an earlier release means a new vhost (or deleting those queues when empty).

Tracing (core.tracing) is set up in each worker process, after the fork: a batch span
processor's export thread does not survive one. Off unless an OTLP endpoint is configured.
"""

import os
from collections.abc import Iterable
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown
from django.conf import settings
from kombu import Exchange, Queue

from core.tracing import tracing_setup, tracing_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

RABBITMQ_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def broker_is_rabbitmq(broker_url: str) -> bool:
    return broker_url.startswith(RABBITMQ_SCHEMES)


def broker_queue_options(broker_url: str, queue_names: Iterable[str]) -> dict[str, Any]:
    """The queue declarations for `broker_url`: on RabbitMQ each named queue is a
    durable quorum queue bound to a topic exchange of its own name (and so is any queue
    Celery creates on the fly); on Redis, Celery's defaults (the queues made on use)."""
    if not broker_is_rabbitmq(broker_url):
        return {
            "task_queues": None,
            "task_default_queue_type": "classic",
            "task_default_exchange_type": "direct",
            "task_create_missing_queue_type": "classic",
            "task_create_missing_queue_exchange_type": None,
        }
    quorum = {"x-queue-type": "quorum"}
    return {
        "task_queues": tuple(
            Queue(
                name,
                Exchange(name, type="topic", durable=True),
                routing_key=name,
                durable=True,
                queue_arguments=quorum,
            )
            for name in queue_names
        ),
        "task_default_queue_type": "quorum",
        "task_default_exchange_type": "topic",
        "task_create_missing_queue_type": "quorum",
        "task_create_missing_queue_exchange_type": "topic",
    }


app = Celery("oms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(broker_queue_options(app.conf.broker_url, settings.TASK_QUEUES))
app.autodiscover_tasks()


@worker_process_init.connect(weak=False)
def _tracing_setup_in_worker_process(**kwargs: Any) -> None:
    tracing_setup(default_service_name="oms-worker")


@worker_process_shutdown.connect(weak=False)
def _tracing_flush_in_worker_process(**kwargs: Any) -> None:
    tracing_shutdown()
