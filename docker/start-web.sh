#!/bin/sh
# Serve the API with gunicorn managing uvicorn workers (ASGI): WEB_CONCURRENCY worker
# processes (one per core), each an event loop with a database connection pool. Long
# polls and live event streams wait on the loop, so one process holds thousands of
# them; each open stream is a socket, hence the open-files limit. The worker's
# heartbeat comes from its event loop, so a long stream never trips --timeout.
set -eu
ulimit -n "${WEB_OPEN_FILES:-65536}" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export DATABASE_POOL="${DATABASE_POOL:-1}"
exec gunicorn config.asgi:application \
    --worker-class uvicorn_worker.UvicornWorker \
    --bind "0.0.0.0:${PORT:-8000}" \
    --workers "${WEB_CONCURRENCY:-2}" \
    --timeout 30 \
    --graceful-timeout 20 \
    --access-logfile -
