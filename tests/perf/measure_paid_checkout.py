"""Measure one paid checkout in process (not part of the suite: run it by name).

    .venv/bin/pytest -q -s -p no:cacheprovider tests/perf/measure_paid_checkout.py
    MEASURE_PATH=general ... (the same, with the single statement turned off)
    MEASURE_PROFILE=60 ...   (also print cProfile's 60 top functions, cumulative)

Through the Django test client and the WSGI stack with a used API key, against the
session's fake Stripe server (no proxy), checkouts of 3 lines paying with pm_card_visa.
The outbox's dispatch after commit is turned off: in tests Celery runs eagerly, and the
routing and email handlers would be counted as the request's. Prints the statements and
write transactions of one checkout, the Python calls cProfile counts in another, and the
main thread's CPU ms per checkout over MEASURE_CHECKOUTS (60) more; the fake server's
own CPU is not counted. Wall ms is printed too, and is noise on a busy machine.
"""

import cProfile
import os
import pstats
import time
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import core.outbox
import flows.api.views
from core.breakers import circuit_breakers_reset
from tests.conftest import new_idempotency_key, order_payload
from tests.factories import UserFactory
from tests.perf.test_query_budgets import client_for, products

pytest_plugins = ("tests.support.fake_stripe",)

WRITES = ("INSERT", "UPDATE", "DELETE", "WITH", "SELECT oms_checkout_write(")


@pytest.mark.django_db(transaction=True)
def test_measure_a_paid_checkout(fake_stripe: Any, settings: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(core.outbox, "outbox_dispatch", lambda ids: None)
    if os.environ.get("MEASURE_PATH") == "general":
        monkeypatch.setattr(flows.api.views, "order_checkout_written", lambda **kw: None)
    circuit_breakers_reset()
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.STRIPE_API_KEY = fake_stripe.api_key
    client = client_for(UserFactory())
    catalogue = products(3)

    def post() -> Any:
        payload = order_payload([(product.sku, 1) for product in catalogue])
        payload["payment_method"] = "pm_card_visa"
        response = client.post(
            "/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY=new_idempotency_key()
        )
        assert response.status_code == 201, response.json()
        return response

    for _ in range(5):  # warm: per-process caches
        post()
    with CaptureQueriesContext(connection) as captured:
        post()
    sql = [query["sql"].strip() for query in captured.captured_queries]
    # Each explicit COMMIT, plus each write in autocommit (outside BEGIN ... COMMIT).
    transactions, inside = 0, False
    for statement in sql:
        if statement == "BEGIN":
            inside = True
        elif statement == "COMMIT":
            inside, transactions = False, transactions + 1
        elif not inside and statement.startswith(WRITES):
            transactions += 1
    profile = cProfile.Profile()
    profile.enable()
    post()
    profile.disable()
    stats = pstats.Stats(profile)
    calls = stats.total_calls
    if os.environ.get("MEASURE_PROFILE"):
        # By function, cumulative: where the checkout's calls go.
        stats.sort_stats("cumulative").print_stats(int(os.environ["MEASURE_PROFILE"]))
    checkouts = int(os.environ.get("MEASURE_CHECKOUTS", "60"))
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(checkouts):
        post()
    cpu_ms = (time.thread_time() - cpu) / checkouts * 1000
    wall_ms = (time.perf_counter() - wall) / checkouts * 1000
    for statement in sql:
        print(statement[:120].replace("\n", " "))
    print(
        f"statements={len(sql)} write_transactions={transactions} python_calls={calls} "
        f"cpu_ms={cpu_ms:.2f} wall_ms={wall_ms:.2f}"
    )
