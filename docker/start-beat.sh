#!/bin/sh
# The scheduler: outbox sweeps, reservation expiry, payment reconciliation, key purge.
set -eu
exec celery -A config beat --loglevel INFO --schedule /tmp/celerybeat-schedule
