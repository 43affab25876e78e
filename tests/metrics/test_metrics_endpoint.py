"""GET /metrics after real requests: checkouts over HTTP against the fake Stripe server,
a decline, an error answer, outbox messages, breakers, Celery tasks."""

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from core.actors import Actor
from core.breakers import circuit_breaker, circuit_breakers_reset
from core.celery_metrics import worker_metrics_serve
from core.models import DeadLetter, OutboxMessage
from core.outbox import dead_letter_record
from core.tasks import worker_heartbeat_task
from fakes.warehouse import FakeWarehouse
from flows.place import OrderLineRequest, order_place
from flows.routing import order_route
from flows.transitions import order_transition_by_name
from tests.conftest import order_payload, stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory
from tests.metrics.conftest import METRICS_TOKEN, parse_samples, value
from tests.payments.conftest import DECLINING_CARD, GOOD_CARD, PRICE, order_action
from tests.support.fake_warehouse import FAST, WAREHOUSE_SECRET
from tests.support.processes import free_port

pytest_plugins = (
    "tests.support.fake_stripe",
    "tests.support.fault_proxy",
    "tests.support.fake_warehouse",
)


@pytest.mark.django_db
def test_metrics_answer_only_with_the_token(anonymous_client, settings):
    settings.METRICS_TOKEN = ""
    assert anonymous_client.get("/metrics").status_code == 404
    assert anonymous_client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404

    settings.METRICS_TOKEN = METRICS_TOKEN
    missing = anonymous_client.get("/metrics")
    wrong = anonymous_client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    api_key_scheme = anonymous_client.get("/metrics", HTTP_AUTHORIZATION=f"Token {METRICS_TOKEN}")
    right = anonymous_client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")

    assert (missing.status_code, missing.json()["code"]) == (401, "not_authenticated")
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert (wrong.status_code, wrong.json()["code"]) == (401, "authentication_failed")
    assert api_key_scheme.status_code == 401
    assert right.status_code == 200
    assert b"# TYPE oms_outbox_backlog gauge" in right.content


@pytest.mark.django_db(transaction=True)
def test_checkouts_declines_and_errors_show_in_the_scrape(
    provider, checkout, customer_client, scrape
):
    before = scrape()

    confirmed = checkout(customer_client, GOOD_CARD, quantity=2)
    declined = checkout(customer_client, DECLINING_CARD)
    too_many = checkout(customer_client, GOOD_CARD, quantity=1000)

    assert confirmed.status_code == 201, confirmed.json()
    assert declined.status_code == 402, declined.json()
    assert (too_many.status_code, too_many.json()["code"]) == (409, "insufficient_stock")
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Business: one checkout per outcome; both created orders count towards value.
    assert delta("oms_orders_placed_total", outcome="created") == 1
    assert delta("oms_orders_placed_total", outcome="payment_declined") == 1
    assert delta("oms_orders_placed_total", outcome="insufficient_stock") == 1
    assert delta("oms_order_value_placed_minor_units_total", currency="EUR") == 3 * PRICE
    assert delta("oms_checkout_duration_seconds_count") == 3
    assert delta("oms_checkout_duration_seconds_bucket", le="+Inf") == 3
    assert delta("oms_checkout_duration_seconds_bucket", le="5.0") == 3
    transitions = "oms_order_transitions_total"
    assert delta(transitions, from_status="pending_payment", to_status="confirmed") == 1
    assert delta(transitions, from_status="pending_payment", to_status="payment_failed") == 1
    # Dependencies: two authorizations reached the provider.
    assert delta("oms_payment_operations_total", kind="authorize", outcome="succeeded") == 1
    assert delta("oms_payment_operations_total", kind="authorize", outcome="declined") == 1
    assert delta("oms_payment_provider_duration_seconds_count", kind="authorize") == 2
    state = "oms_circuit_breaker_state"
    assert value(after, state, breaker="payment-provider", state="closed") == 1
    assert value(after, state, breaker="payment-provider", state="open") == 0
    # Application: requests by URL name and status, errors by code.
    requests_total = "oms_http_requests_total"
    for status in ("201", "402", "409"):
        assert delta(requests_total, route="order-list", method="POST", status=status) == 1
    assert delta("oms_api_errors_total", code="payment_declined", status="402") == 1
    assert delta("oms_api_errors_total", code="insufficient_stock", status="409") == 1
    assert delta("oms_http_requests_total", route="metrics", method="GET", status="200") == 1
    # Queues: the confirmation's outbox messages were handled (eagerly, after commit).
    handled = delta("oms_celery_tasks_total", task="oms.core.outbox_handle", outcome="success")
    assert handled >= 2
    assert delta("oms_celery_task_duration_seconds_count", task="oms.core.outbox_handle") == (
        handled
    )
    # Stock: the confirmed and the declined order both hold their units.
    assert value(after, "oms_stock_reserved_units", warehouse="main") == 3


@pytest.mark.django_db
def test_outbox_backlog_age_and_dead_letters_are_read_at_scrape_time(scrape):
    empty = scrape()
    assert value(empty, "oms_outbox_backlog", queue="emails") == 0
    assert value(empty, "oms_outbox_oldest_message_age_seconds", queue="emails") == 0
    dead_before = value(empty, "oms_dead_letters_total", task="oms.test.task")

    for number in range(3):
        OutboxMessage.objects.create(
            topic="order.confirmed",
            handler="email",
            queue="emails",
            payload={},
            dedup_key=f"metrics-test-{number}",
        )
    OutboxMessage.objects.filter(dedup_key="metrics-test-0").update(
        created_at=timezone.now() - timedelta(seconds=90)
    )
    dead_letter_record(task_name="oms.test.task", task_id="1", args=[], kwargs={}, error="boom")
    after = scrape()

    assert value(after, "oms_outbox_backlog", queue="emails") == 3
    assert value(after, "oms_outbox_backlog", queue="routing") == 0
    assert 90 <= value(after, "oms_outbox_oldest_message_age_seconds", queue="emails") < 120
    assert value(after, "oms_dead_letters_unresolved") == DeadLetter.objects.count() == 1
    # The counter counts committed dead letters only (this test's transaction is not).
    assert value(after, "oms_dead_letters_total", task="oms.test.task") == dead_before


@pytest.mark.django_db
def test_an_open_breaker_reads_open_at_scrape_time(scrape):
    circuit_breakers_reset()
    breaker = circuit_breaker("metrics-test-dependency", fail_max=1, reset_timeout=60)

    def fail() -> None:
        raise ConnectionError("down")

    try:
        with pytest.raises(ConnectionError):
            breaker.call(fail)
        samples = scrape()
    finally:
        circuit_breakers_reset()

    state = "oms_circuit_breaker_state"
    assert value(samples, state, breaker="metrics-test-dependency", state="open") == 1
    assert value(samples, state, breaker="metrics-test-dependency", state="closed") == 0


@pytest.mark.django_db
def test_heartbeat_task_sets_the_timestamp_and_counts_its_run(scrape):
    before = scrape()
    started = time.time()

    worker_heartbeat_task.apply()
    after = scrape()

    assert started <= value(after, "oms_worker_heartbeat_timestamp_seconds") <= time.time()
    name = "oms.core.worker_heartbeat"
    runs = "oms_celery_tasks_total"
    assert (
        value(after, runs, task=name, outcome="success")
        - value(before, runs, task=name, outcome="success")
        == 1
    )


@pytest.mark.django_db
def test_worker_serves_its_task_metrics_on_its_own_port(settings, scrape):
    settings.WORKER_METRICS_PORT = free_port()
    worker_heartbeat_task.apply()

    server = worker_metrics_serve()
    assert server is not None
    try:
        answer = requests.get(f"http://127.0.0.1:{settings.WORKER_METRICS_PORT}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()

    samples = parse_samples(answer.text)
    heartbeat = {"task": "oms.core.worker_heartbeat", "outcome": "success"}
    assert value(samples, "oms_celery_tasks_total", **heartbeat) >= 1
    # Scrape-time gauges are the web's alone.
    assert not any(name.startswith("oms_outbox_backlog") for name, _ in samples)


def test_worker_serves_nothing_without_a_port(settings):
    settings.WORKER_METRICS_PORT = 0

    assert worker_metrics_serve() is None


@pytest.mark.django_db(transaction=True)
def test_shipping_and_refunds_show_in_the_scrape(
    provider, checkout, customer_client, staff_client, scrape
):
    order_id = checkout(customer_client, GOOD_CARD).json()["id"]
    before = scrape()

    assert order_action(staff_client, order_id, "ship").status_code == 200
    partial = order_action(staff_client, order_id, "refund", {"amount": 500})
    rest = order_action(staff_client, order_id, "refund", {"amount": PRICE - 500})
    after = scrape()

    assert (partial.status_code, rest.json()["status"]) == (200, "refunded")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("oms_refunds_total", currency="EUR") == 2
    assert delta("oms_refund_amount_minor_units_total", currency="EUR") == PRICE
    assert delta("oms_payment_operations_total", kind="capture", outcome="succeeded") == 1
    assert delta("oms_payment_operations_total", kind="refund", outcome="succeeded") == 2
    transitions = "oms_order_transitions_total"
    assert delta(transitions, from_status="routed", to_status="shipped") == 1
    assert delta(transitions, from_status="shipped", to_status="refunded") == 1


@pytest.mark.django_db
def test_warehouse_calls_and_breakers_show_in_the_scrape(scrape, settings):
    settings.FULFILMENT_CALLBACK_BASE_URL = "http://oms.test"
    circuit_breakers_reset()
    fake = FakeWarehouse(secret=WAREHOUSE_SECRET, **{**FAST, "auto_callbacks": False}).start()
    try:
        warehouse = WarehouseFactory(
            fulfilment_url=fake.requests_url, fulfilment_secret=WAREHOUSE_SECRET
        )
        product = ProductFactory(price=1500)
        stock_receive(product, warehouse, 5)
        order = order_place(
            customer=UserFactory(),
            email="ada@example.com",
            shipping_address=order_payload([])["shipping_address"],
            lines=[OrderLineRequest(sku=product.sku, quantity=2)],
            actor=Actor.system(),
        )
        order_transition_by_name(order_id=order.pk, transition="confirm", actor=Actor.system())
        before = scrape()

        order_route(order_id=order.pk)
        after = scrape()
    finally:
        fake.stop()
        circuit_breakers_reset()

    calls = "oms_warehouse_calls_total"
    accepted = {"operation": "send", "outcome": "accepted"}
    assert value(after, calls, **accepted) - value(before, calls, **accepted) == 1
    breaker = f"warehouse-{warehouse.code}"
    # Reported before the first call too: every warehouse with a URL has its breaker.
    assert value(before, "oms_circuit_breaker_state", breaker=breaker, state="closed") == 1
    assert value(after, "oms_circuit_breaker_state", breaker=breaker, state="closed") == 1
