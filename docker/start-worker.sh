#!/bin/sh
# A Celery worker for the given queues (default: all).
set -eu
exec celery -A config worker \
    --queues "${CELERY_QUEUES:-emails,routing,payments,events,default}" \
    --concurrency "${CELERY_CONCURRENCY:-2}" \
    --loglevel INFO
