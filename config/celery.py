"""The Celery app. Tasks live in each app's tasks.py; configuration in settings (CELERY_*).

Tracing (core.tracing) is set up in each worker process, after the fork: a batch span
processor's export thread does not survive one. Off unless an OTLP endpoint is configured.
"""

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from core.tracing import tracing_setup, tracing_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("oms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect(weak=False)
def _tracing_setup_in_worker_process(**kwargs: Any) -> None:
    tracing_setup(default_service_name="oms-worker")


@worker_process_shutdown.connect(weak=False)
def _tracing_flush_in_worker_process(**kwargs: Any) -> None:
    tracing_shutdown()
