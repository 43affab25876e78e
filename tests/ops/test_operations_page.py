"""The admin's operations page: orders, checkout latency, errors, queues, breakers and
webhook lag of the last hour as server-rendered SVG, from the samples the beat task
takes of the real metrics (orders placed through the API, events delivered to a real
receiver)."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from core.breakers import circuit_breaker, circuit_breakers_reset
from core.metric_samples import (
    counter_increase,
    histogram_quantile,
    metric_samples_take,
    per_minute_rates,
    snapshots_since,
)
from core.metrics import API_ERRORS, metrics_text
from core.models import MetricSample, OutboxMessage
from core.outbox import dead_letter_record, outbox_handle
from core.tasks import metric_samples_take_task
from events.selectors import topics_with_subscribers_forget
from tests.events.conftest import subscribe
from tests.factories import StaffFactory, UserFactory
from tests.metrics.conftest import parse_samples
from tests.support.webhook_receiver import receiver  # noqa: F401

pytestmark = pytest.mark.django_db

PAGE = "/admin/core/operationspage/"
INF = float("inf")


def staff_client(**fields: Any) -> Client:
    client = Client()
    client.force_login(StaffFactory(**fields))
    return client


def series(page: str, chart: str) -> dict[str, list[str]]:
    """The values in the point titles of each series of the chart titled `chart`."""
    svg = page.split(f'aria-label="{chart}"', 1)[1].split("</svg>", 1)[0]
    found: dict[str, list[str]] = {}
    for name, body in re.findall(r'<g class="ops-series" data-series="([^"]*)">(.*?)</g>', svg):
        found[name] = re.findall(r"<title>[^<]* \d\d:\d\d: ([^<]*)</title>", body)
    return found


@pytest.fixture
def breakers() -> Any:
    circuit_breakers_reset()
    yield
    circuit_breakers_reset()


@pytest.fixture
def subscriptions() -> Any:
    # The per-process cache of subscribed topics outlives each test's rolled-back rows.
    topics_with_subscribers_forget()
    yield
    topics_with_subscribers_forget()


def test_page_charts_the_last_hour_of_orders_latency_errors_queues_and_webhooks(
    customer_client,
    stocked_product,
    place_order,
    receiver,  # noqa: F811
    breakers,
    subscriptions,
    django_capture_on_commit_callbacks,
    django_assert_max_num_queries,
):
    # Given a snapshot a minute ago, then three orders placed and one refused for stock,
    # a subscriber that received the first order's events, a dead letter and an open
    # breaker
    now = timezone.now()
    product = stocked_product(quantities={"main": 3}, price=1500)
    subscribe(receiver.url("/crm"), name="ops-crm")
    metric_samples_take(now=now - timedelta(seconds=60))
    placed = [place_order(customer_client, [(product.sku, 1)]) for _ in range(3)]
    refused = place_order(customer_client, [(product.sku, 1)])
    assert [r.status_code for r in placed] == [201, 201, 201]
    assert refused.json()["code"] == "insufficient_stock"
    with django_capture_on_commit_callbacks(execute=True):
        for message in OutboxMessage.objects.filter(handler="events.dispatch_order_event"):
            outbox_handle(message.pk)
    dead_letter_record(task_name="oms.test.task", task_id="t-1", args=[], kwargs={}, error="x")
    opened = circuit_breaker("ops-test-dependency", fail_max=1, reset_timeout=60)
    opened.open()
    stuck = OutboxMessage.objects.create(
        topic="ops.test", handler="ops.test", queue="routing", payload={}, dedup_key="ops-1"
    )
    OutboxMessage.objects.filter(pk=stuck.pk).update(created_at=now - timedelta(seconds=90))
    backlog = {
        queue: OutboxMessage.objects.filter(
            queue=queue, status__in=["pending", "dispatched"]
        ).count()
        for queue in ("emails", "routing", "payments", "events", "default")
    }

    # When the beat task takes the next snapshot and staff open the page
    metric_samples_take(now=now)
    client = staff_client(groups=[])
    with django_assert_max_num_queries(8):
        response = client.get(PAGE)

    # Then each chart shows the figures of the minute between the snapshots
    assert response.status_code == 200
    page = response.content.decode()
    assert "<script" not in page.split('id="content-main"', 1)[1]
    orders = series(page, "Orders placed per minute, by outcome")
    assert orders["created"] == ["3"]
    assert orders["insufficient_stock"] == ["1"]
    assert series(page, "API errors per minute, by code")["insufficient_stock"] == ["1"]
    latency = series(page, "Checkout latency p50 / p99")
    assert len(latency["p50"]) == len(latency["p99"]) == 1
    assert latency["p50"][0].endswith(("ms", "s"))
    outbox = series(page, "Outbox backlog, by queue")
    assert {queue: values[-1] for queue, values in outbox.items()} == {
        queue: str(count) for queue, count in backlog.items()
    }
    assert backlog["routing"] == 1
    oldest = series(page, "Outbox: age of the oldest message, by queue")["routing"][-1]
    assert 90 <= float(oldest.removesuffix(" s")) < 120
    assert series(page, "Dead letters not re-driven")["unresolved"][-1] == "1"
    assert series(page, "Circuit breakers open (1 = open), by dependency")[
        "ops-test-dependency"
    ] == ["1"]
    assert "<strong>ops-test-dependency</strong>: open" in page
    lag = series(page, "Webhook delivery lag p50 / p99")
    assert len(receiver.on("/crm")) == 3  # order.created of each order
    assert len(lag["p50"]) == len(lag["p99"]) == 1


def test_page_without_samples_says_how_they_are_taken():
    response = staff_client().get(PAGE)

    assert response.status_code == 200
    assert "No samples yet" in response.content.decode()
    assert "oms.core.take_metric_samples" in response.content.decode()


def test_page_is_linked_from_the_admin_index_for_any_staff_user():
    index = staff_client(groups=[]).get("/admin/")

    assert index.status_code == 200
    assert PAGE in index.content.decode()


def test_someone_not_staff_is_sent_to_the_login_page():
    client = Client()
    client.force_login(UserFactory())

    response = client.get(PAGE)
    anonymous = Client().get(PAGE)

    assert response.status_code == anonymous.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert anonymous["Location"].startswith("/admin/login/")


def test_the_beat_task_stores_a_snapshot_and_forgets_those_past_retention(settings):
    settings.METRIC_SAMPLE_RETENTION = timedelta(hours=24)
    old = MetricSample.objects.create(
        taken_at=timezone.now() - timedelta(hours=25), name="oms_dead_letters_unresolved", value=3
    )

    stored = metric_samples_take_task()

    assert stored == MetricSample.objects.count() > 0
    assert not MetricSample.objects.filter(pk=old.pk).exists()
    names = set(MetricSample.objects.values_list("name", flat=True))
    assert {"oms_outbox_backlog", "oms_dead_letters_unresolved"} <= names
    assert len(set(MetricSample.objects.values_list("taken_at", flat=True))) == 1


def test_quantiles_interpolate_inside_the_bucket_as_prometheus_does():
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, INF: 100.0}

    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.1 + 0.4 * 25 / 40)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.95)
    # In the +Inf bucket: the highest finite bound; no observations: no quantile.
    assert histogram_quantile(0.99, {1.0: 90.0, INF: 100.0}) == 1.0
    assert histogram_quantile(0.5, {1.0: 0.0, INF: 0.0}) is None


def test_a_counter_that_went_down_was_reset_and_counts_from_zero():
    assert counter_increase(10, 15) == 5
    assert counter_increase(10, 4) == 4
    assert counter_increase(None, 7) == 7


def test_rates_are_per_minute_whatever_the_interval():
    start = timezone.now() - timedelta(minutes=5)
    for offset, value in ((0, 10.0), (120, 30.0)):
        MetricSample.objects.create(
            taken_at=start + timedelta(seconds=offset),
            name="oms_orders_placed_total",
            labels={"outcome": "created"},
            value=value,
        )

    rates = per_minute_rates(
        snapshots_since(start), "oms_orders_placed_total", lambda labels: labels["outcome"]
    )

    assert rates == {"created": [(start + timedelta(seconds=120), 10.0)]}


@pytest.mark.django_db(transaction=True)
def test_a_worker_samples_the_web_scrape_and_adds_its_own_instruments(
    live_server, settings, caplog
):
    # Given the web's /metrics at a URL (here a server in this process, so its
    # instruments are this process's too), two dead letters, and a URL that answers
    # nothing
    settings.METRICS_TOKEN = "ops-token"
    settings.METRIC_SAMPLE_SCRAPE_URLS = [
        f"{live_server.url}/metrics",
        "http://127.0.0.1:9/metrics",
    ]
    for number in range(2):
        dead_letter_record(
            task_name="oms.test.task", task_id=f"t-{number}", args=[], kwargs={}, error="x"
        )
    API_ERRORS.labels(code="ops_sampled", status="400").inc(3)
    local = parse_samples(metrics_text().decode())

    metric_samples_take()

    # Then the scrape-time gauges come from the web's scrape alone, and the instruments
    # of both sources add up; the silent URL is logged and left out
    stored = {
        (name, tuple(sorted(labels.items()))): value
        for name, labels, value in MetricSample.objects.values_list("name", "labels", "value")
    }
    assert stored[("oms_dead_letters_unresolved", ())] == 2
    counted = local[
        ("oms_api_errors_total", frozenset({("code", "ops_sampled"), ("status", "400")}))
    ]
    assert counted >= 3
    for source in ("local", f"{live_server.url}/metrics"):
        labels = (("code", "ops_sampled"), ("source", source), ("status", "400"))
        assert stored[("oms_api_errors_total", labels)] == counted
        assert stored[("oms_metric_sample_source_up", (("source", source),))] == 1
    assert not any(
        dict(labels).get("source") == "http://127.0.0.1:9/metrics" for _, labels in stored
    )
    assert "http://127.0.0.1:9/metrics" in caplog.text


def test_a_source_that_did_not_answer_before_adds_no_increase_when_it_is_back():
    # Given a source that answered at 12:00 and 12:02 but not at 12:01, and a series
    # that first appeared at 12:02 on a source that answered all along
    start = timezone.now() - timedelta(minutes=5)
    rows = [
        ("oms_metric_sample_source_up", {"source": "web"}, 0, 1),
        ("oms_metric_sample_source_up", {"source": "local"}, 0, 1),
        ("oms_api_errors_total", {"code": "a", "source": "web"}, 0, 100),
        ("oms_metric_sample_source_up", {"source": "local"}, 1, 1),
        ("oms_metric_sample_source_up", {"source": "web"}, 2, 1),
        ("oms_metric_sample_source_up", {"source": "local"}, 2, 1),
        ("oms_api_errors_total", {"code": "a", "source": "web"}, 2, 104),
        ("oms_api_errors_total", {"code": "b", "source": "local"}, 2, 2),
    ]
    for name, labels, minute, value in rows:
        MetricSample.objects.create(
            taken_at=start + timedelta(minutes=minute), name=name, labels=labels, value=value
        )

    rates = per_minute_rates(
        snapshots_since(start), "oms_api_errors_total", lambda labels: labels["code"]
    )

    # Then the web's counter adds nothing at 12:02 (not 104), the new one counts 2
    assert rates == {"b": [(start + timedelta(minutes=2), 2.0)]}
