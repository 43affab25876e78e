"""A real worker with the scheduler: heartbeats and task metrics on the worker's own port,
written by its pool process into its own multiprocess directory."""

import time

import pytest
import requests

from tests.metrics.conftest import parse_samples, value
from tests.support.processes import free_port
from tests.support.worker import wait_for

pytest_plugins = ("tests.support.redis_server", "tests.support.worker")


@pytest.mark.django_db(transaction=True)
def test_scheduled_heartbeats_show_on_the_workers_metrics_port(start_worker, tmp_path):
    metrics_dir = tmp_path / "worker-metrics"
    metrics_dir.mkdir()
    port = free_port()
    started = time.time()
    worker = start_worker(
        env={
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "WORKER_METRICS_PORT": str(port),
            "WORKER_HEARTBEAT_INTERVAL_SECONDS": "1",
        },
        beat=True,
    )

    task = {"task": "oms.core.worker_heartbeat"}

    def heartbeat_scraped() -> dict | None:
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        except requests.ConnectionError:
            return None
        samples = parse_samples(answer.text)
        beat = value(samples, "oms_worker_heartbeat_timestamp_seconds")
        # The task's counter and its duration are written one after the other, after the
        # task: a scrape between the two sees one without the other.
        timed = value(samples, "oms_celery_task_duration_seconds_count", **task)
        return samples if beat >= started and timed >= 1 else None

    samples = wait_for(heartbeat_scraped, what="a heartbeat on the worker's port", worker=worker)

    assert value(samples, "oms_celery_tasks_total", **task, outcome="success") >= 1
    assert value(samples, "oms_celery_task_duration_seconds_count", **task) >= 1
    assert value(samples, "oms_worker_heartbeat_timestamp_seconds") <= time.time()
    # The pool process (not the main one that serves the port) wrote them.
    assert list(metrics_dir.glob("counter_*.db"))
