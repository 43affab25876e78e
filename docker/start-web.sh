#!/bin/sh
# Serve the API with uvicorn (ASGI): WEB_CONCURRENCY worker processes (one per core),
# each an event loop with a database connection pool. Long polls and live event streams
# wait on the loop, so one process holds thousands of them; each open stream is a
# socket, hence the open-files limit.
set -eu
ulimit -n "${WEB_OPEN_FILES:-65536}" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export DATABASE_POOL="${DATABASE_POOL:-1}"
exec uvicorn config.asgi:application \
    --host 0.0.0.0 \
    --port "${PORT:-8000}" \
    --workers "${WEB_CONCURRENCY:-2}" \
    --lifespan off \
    --timeout-keep-alive 5 \
    --timeout-graceful-shutdown 20 \
    --proxy-headers
