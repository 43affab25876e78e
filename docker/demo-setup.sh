#!/bin/sh
# The demo's setup, shared by scripts/run and the compose stack's demo profile:
#  1. when FAKE_STRIPE_WEBHOOK_URL is set, make the fake Stripe server at STRIPE_API_BASE
#     deliver its webhooks there, signed with STRIPE_WEBHOOK_SECRET;
#  2. load the demo data (manage.py seed_demo: warehouses, products, stock, users) with
#     FAKE_WAREHOUSE_URL / FAKE_WAREHOUSE_SECRET as the demo warehouses' fulfilment
#     service, and print the demo API keys.
# PYTHON names the interpreter (scripts/run: the virtualenv's).
set -eu
PYTHON="${PYTHON:-python}"
if [ -n "${FAKE_STRIPE_WEBHOOK_URL:-}" ]; then
    "$PYTHON" -m fakes.stripe_webhook --api-base "$STRIPE_API_BASE" \
        --url "$FAKE_STRIPE_WEBHOOK_URL" --secret "$STRIPE_WEBHOOK_SECRET" \
        --wait "${FAKE_STRIPE_WAIT_SECONDS:-30}"
fi
exec "$PYTHON" manage.py seed_demo \
    --warehouse-url "${FAKE_WAREHOUSE_URL:-}" --warehouse-secret "${FAKE_WAREHOUSE_SECRET:-}"
