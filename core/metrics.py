"""Prometheus metrics shared by every process: the scrape, and the instruments of core.

Counters and histograms are prometheus-client instruments. With PROMETHEUS_MULTIPROC_DIR
set (before prometheus_client is first imported) every process writes its values to
files in that directory, and a scrape sums them: several gunicorn workers and Celery
pool processes read as one. The directory is emptied when the server starts
(gunicorn.conf.py, docker/start-worker.sh) and a dead process's live gauges are dropped
(`metrics_process_dead`).

Gauges read at scrape time (outbox backlog, breaker states, reserved stock) are not
instruments: an app registers a function with `scrape_collector` that yields metric
families, and only `/metrics` runs it, cheaply, from the database or the breaker store.
"""

import logging
import os
from collections.abc import Callable, Iterable, Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from core.breakers import circuit_breaker_states

logger = logging.getLogger(__name__)

# The classic text format (legacy names), which every Prometheus 2.x and 3.x reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Requests and API errors (core.middleware, core.api.exceptions).
HTTP_REQUESTS = Counter(
    "oms_http_requests",
    "HTTP requests answered, by URL name (not the raw path), method and status.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "oms_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL name.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_ERRORS = Counter(
    "oms_api_errors",
    "problem+json error responses, by their stable code and status.",
    ["code", "status"],
)

# Background work (core.outbox, core.celery_metrics).
DEAD_LETTERS = Counter(
    "oms_dead_letters",
    "Tasks dead-lettered after their last attempt, by task name.",
    ["task"],
)
CELERY_TASKS = Counter(
    "oms_celery_tasks",
    "Celery task runs, by task name and outcome (success, failure, retry, ...).",
    ["task", "outcome"],
)
CELERY_TASK_DURATION = Histogram(
    "oms_celery_task_duration_seconds",
    "Time a Celery task ran, by task name.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
WORKER_HEARTBEAT = Gauge(
    "oms_worker_heartbeat_timestamp_seconds",
    "Unix time a worker last ran the heartbeat task the scheduler sends.",
    multiprocess_mode="max",
)

ScrapeCollector = Callable[[], Iterable[Metric]]
_scrape_collectors: list[ScrapeCollector] = []


def scrape_collector(func: ScrapeCollector) -> ScrapeCollector:
    """Register `func` to yield metric families at each scrape of /metrics."""
    if func not in _scrape_collectors:
        _scrape_collectors.append(func)
    return func


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


class MetricsScrape:
    """What one scrape reads: the instruments (every process's files in multiprocess
    mode, this process's otherwise), then the scrape-time gauges."""

    def __init__(self, scrape_time: bool = True) -> None:
        self.scrape_time = scrape_time

    def collect(self) -> Iterator[Metric]:
        path = multiprocess_dir()
        if path:
            yield from multiprocess.MultiProcessCollector(None, path=path).collect()
        else:
            yield from REGISTRY.collect()
        if not self.scrape_time:
            return
        for func in _scrape_collectors:
            try:
                families = list(func())
            except Exception:
                # One failing source (database down) leaves the rest of the scrape.
                logger.exception("Metrics collector %s failed", func.__name__)
                continue
            yield from families


def metrics_text() -> bytes:
    """The Prometheus text exposition of every metric, scrape-time gauges included."""
    return generate_latest(MetricsScrape())


def metrics_process_dead(pid: int) -> None:
    """Drop the live gauges of a process that exited (multiprocess mode only)."""
    path = multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(pid, path)


BREAKER_STATES = ("closed", "open", "half-open")
_breaker_sources: list[Callable[[], object]] = []


def breaker_source(func: Callable[[], object]) -> Callable[[], object]:
    """Register `func` to make (or look up) an app's breakers before each scrape, so a
    process that has not called a dependency yet still reports its breaker's state
    (shared through BREAKER_REDIS_URL)."""
    if func not in _breaker_sources:
        _breaker_sources.append(func)
    return func


@scrape_collector
def breaker_metrics() -> Iterator[Metric]:
    """oms_circuit_breaker_state{breaker, state}: 1 for the breaker's current state."""
    family = GaugeMetricFamily(
        "oms_circuit_breaker_state",
        "Circuit breaker state per dependency: 1 for the current state (closed, open, "
        "half-open, unknown when its store cannot be read), 0 for the others.",
        labels=["breaker", "state"],
    )
    for source in _breaker_sources:
        try:
            source()
        except Exception:
            # The breakers already made are still reported (the database may be down).
            logger.exception("Breaker source %s failed", getattr(source, "__name__", source))
    for name, current in sorted(circuit_breaker_states().items()):
        for state in (*BREAKER_STATES, "unknown"):
            family.add_metric([name, state], 1.0 if current == state else 0.0)
    yield family


@scrape_collector
def outbox_metrics() -> Iterator[Metric]:
    """Outbox backlog and the age of its oldest message, per queue; unresolved dead
    letters. Two aggregate queries over the undelivered rows only."""
    from core.models import DeadLetter, OutboxMessage

    backlog = GaugeMetricFamily(
        "oms_outbox_backlog",
        "Outbox messages not yet handled (pending or dispatched), per queue.",
        labels=["queue"],
    )
    oldest = GaugeMetricFamily(
        "oms_outbox_oldest_message_age_seconds",
        "Age of the oldest outbox message not yet handled, per queue (0 when none).",
        labels=["queue"],
    )
    now = timezone.now()
    rows = (
        OutboxMessage.objects.filter(
            status__in=[OutboxMessage.Status.PENDING, OutboxMessage.Status.DISPATCHED]
        )
        .values("queue")
        .annotate(count=Count("pk"), oldest=Min("created_at"))
        .order_by("queue")
    )
    seen = set()
    for row in rows:
        seen.add(row["queue"])
        backlog.add_metric([row["queue"]], row["count"])
        oldest.add_metric([row["queue"]], max(0.0, (now - row["oldest"]).total_seconds()))
    for queue in _outbox_queues():
        if queue not in seen:
            backlog.add_metric([queue], 0)
            oldest.add_metric([queue], 0)
    dead = GaugeMetricFamily(
        "oms_dead_letters_unresolved",
        "Dead letters not re-driven yet.",
        value=DeadLetter.objects.filter(redriven_at__isnull=True).count(),
    )
    yield backlog
    yield oldest
    yield dead


def _outbox_queues() -> tuple[str, ...]:
    from django.conf import settings

    return tuple(settings.TASK_QUEUES)
