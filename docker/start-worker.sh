#!/bin/sh
# A Celery worker for the given queues (default: all) with a pool of its own size: the
# compose stack runs one per kind of work (CELERY_QUEUES, CELERY_CONCURRENCY).
set -eu
# Metrics of an earlier run would be summed into this one's: start from an empty
# multiprocess directory (pool processes write there; WORKER_METRICS_PORT serves it).
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    rm -rf "$PROMETHEUS_MULTIPROC_DIR"
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi
# core.heartbeat: the worker's event loop touches WORKER_HEARTBEAT_FILE while it runs;
# the healthcheck reads its age (python -m core.heartbeat).
exec celery -A config worker \
    --include core.heartbeat \
    --queues "${CELERY_QUEUES:-emails,routing,payments,events,default}" \
    --concurrency "${CELERY_CONCURRENCY:-2}" \
    --loglevel INFO
