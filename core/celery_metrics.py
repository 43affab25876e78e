"""Celery task metrics from Celery's signals, and the multiprocess bookkeeping of a worker.

Every task's outcome (its final state: success, failure, retry, ...) and run time are
counted by task name. A prefork pool process that exits has its live gauges dropped.
With WORKER_METRICS_PORT set, the worker's main process serves its metrics (every pool
process's, read from PROMETHEUS_MULTIPROC_DIR) on that port, for a worker that does not
share the web servers' directory (its own container).
"""

import logging
import os
import time
from typing import Any
from wsgiref.simple_server import WSGIServer

from celery.signals import task_postrun, task_prerun, worker_init, worker_process_shutdown
from django.conf import settings
from prometheus_client import start_http_server

from core.metrics import (
    CELERY_TASK_DURATION,
    CELERY_TASKS,
    MetricsScrape,
    metrics_process_dead,
)

logger = logging.getLogger(__name__)

_started: dict[str, float] = {}


@task_prerun.connect(weak=False)
def _task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@task_postrun.connect(weak=False)
def _task_finished(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    name = getattr(task, "name", None) or "unknown"
    CELERY_TASKS.labels(task=name, outcome=(state or "unknown").lower()).inc()
    started = _started.pop(task_id or "", None)
    if started is not None:
        CELERY_TASK_DURATION.labels(task=name).observe(time.perf_counter() - started)


@worker_process_shutdown.connect(weak=False)
def _pool_process_exited(**_: Any) -> None:
    metrics_process_dead(os.getpid())


@worker_init.connect(weak=False)
def worker_metrics_serve(**_: Any) -> WSGIServer | None:
    """In the worker's main process, before the pool starts: serve the instruments of
    every pool process (no scrape-time gauges: the web's /metrics has those) on
    WORKER_METRICS_ADDR:WORKER_METRICS_PORT when the port is set."""
    port = settings.WORKER_METRICS_PORT
    if not port:
        return None
    server, _thread = start_http_server(
        port, addr=settings.WORKER_METRICS_ADDR, registry=MetricsScrape(scrape_time=False)
    )
    logger.info("Worker metrics on %s:%s/metrics", settings.WORKER_METRICS_ADDR, port)
    return server
