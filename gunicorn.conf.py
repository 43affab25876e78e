"""gunicorn settings read from the working directory (docker/start-web.sh serves from the
repository root): the Prometheus multiprocess directory's life cycle, and tracing set up
in each worker after the fork.

With PROMETHEUS_MULTIPROC_DIR set, every worker writes its metrics there and /metrics
sums them. The directory is emptied when the master starts, before any worker writes
(files of an earlier run would be summed in), and a worker that exits has its live
gauges dropped.

Tracing (core.tracing, off unless an OTLP endpoint is configured) is set up in each
worker right after the fork, before it loads the application (docker/start-web.sh does
not preload it in the master), so each worker process has its own provider and export
thread. config.asgi asks again when it is loaded, which is then a no-op.
"""

import os
from typing import Any


def on_starting(server: Any) -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not path:
        return
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def child_exit(server: Any, worker: Any) -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)


def post_fork(server: Any, worker: Any) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from core.tracing import tracing_setup

    tracing_setup(default_service_name="oms-web")


def worker_exit(server: Any, worker: Any) -> None:
    from core.tracing import tracing_shutdown

    tracing_shutdown()
