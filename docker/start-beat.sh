#!/bin/sh
# The scheduler: outbox sweeps, reservation expiry, payment reconciliation, key purge.
# Its scheduler touches BEAT_HEARTBEAT_FILE on every tick (core.heartbeat), for the
# healthcheck.
set -eu
exec celery -A config beat --loglevel INFO --schedule /tmp/celerybeat-schedule \
    --scheduler core.heartbeat:HeartbeatScheduler
