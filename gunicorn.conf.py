"""gunicorn settings read from the working directory (docker/start-web.sh serves from the
repository root): the Prometheus multiprocess directory's life cycle.

With PROMETHEUS_MULTIPROC_DIR set, every worker writes its metrics there and /metrics
sums them. The directory is emptied when the master starts, before any worker writes
(files of an earlier run would be summed in), and a worker that exits has its live
gauges dropped.
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
