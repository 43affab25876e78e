"""A short history of a few metrics, kept in the database for the admin's operations page.

The instruments are process-local counters (prometheus-client, multiprocess mode): they
have no past. Each minute a beat task takes a snapshot of the series the operations page
charts (`metric_samples_take`), as the /metrics scrape reads them, into `MetricSample`
rows that all share the snapshot's `taken_at`; rows older than METRIC_SAMPLE_RETENTION
are deleted. Rates and quantiles are computed from consecutive snapshots the way
Prometheus computes them from consecutive scrapes: a counter that went down was reset
(a restart) and counts from zero; a histogram's quantile interpolates linearly inside
the bucket that holds it (`histogram_quantile`).

A worker's process directory holds only the worker's instruments (the web has its own,
README "Multiprocess mode"): METRIC_SAMPLE_SCRAPE_URLS names the /metrics of the web
processes, read with METRICS_TOKEN, and the worker adds its own instruments to them.
Each counter and histogram sample carries its `source` (`local` or the URL), so a
source that restarted or did not answer one minute is told apart from the others.
"""

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import MetricsScrape
from core.models import MetricSample

logger = logging.getLogger(__name__)

# The sample names the operations page charts (README, "Operations page").
SAMPLED_NAMES = frozenset(
    {
        "oms_orders_placed_total",
        "oms_checkout_duration_seconds_bucket",
        "oms_api_errors_total",
        "oms_outbox_backlog",
        "oms_outbox_oldest_message_age_seconds",
        "oms_dead_letters_unresolved",
        "oms_circuit_breaker_state",
        "oms_webhook_delivery_lag_seconds_bucket",
    }
)
SCRAPE_TIMEOUT_SECONDS = 5.0

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]


# Scrape-time gauges: every source that serves them reads the same database, so they
# are taken from the first source that answers, never added up.
SHARED_GAUGES = frozenset(
    {
        "oms_outbox_backlog",
        "oms_outbox_oldest_message_age_seconds",
        "oms_dead_letters_unresolved",
        "oms_circuit_breaker_state",
    }
)
# One sample per source that answered, so a counter of a source that was missing from
# the snapshot before is not taken for a new counter (its whole value as an increase).
SOURCE_UP = "oms_metric_sample_source_up"
LOCAL_SOURCE = "local"


def _remote_families(url: str) -> list[Metric]:
    headers = {"Authorization": f"Bearer {settings.METRICS_TOKEN}"}
    response = requests.get(url, headers=headers, timeout=SCRAPE_TIMEOUT_SECONDS)
    response.raise_for_status()
    return list(text_string_to_metric_families(response.text))


def _sources() -> Iterator[tuple[str, list[Metric]]]:
    urls = settings.METRIC_SAMPLE_SCRAPE_URLS
    yield LOCAL_SOURCE, list(MetricsScrape(scrape_time=not urls).collect())
    for url in urls:
        try:
            families = _remote_families(url)
        except (requests.RequestException, ValueError) as error:
            # The snapshot goes on without it: a gap in its series, not in all.
            logger.warning("Metrics of %s not sampled: %s", url, error)
            continue
        yield url, families


def metric_samples_collect() -> dict[SeriesKey, float]:
    """Read the sampled series now: this process's scrape, or, with
    METRIC_SAMPLE_SCRAPE_URLS, each of those scrapes plus this process's own instruments
    (the scrape-time gauges come with the remote scrape). Counters and histograms carry
    a `source` label (`local` or the URL); the page adds the sources up."""
    values: dict[SeriesKey, float] = {}
    gauges_from: dict[str, str] = {}
    for source, families in _sources():
        values[(SOURCE_UP, (("source", source),))] = 1.0
        for family in families:
            for sample in family.samples:
                if sample.name not in SAMPLED_NAMES:
                    continue
                labels = dict(sample.labels)
                if sample.name in SHARED_GAUGES:
                    if gauges_from.setdefault(sample.name, source) != source:
                        continue
                else:
                    labels["source"] = source
                key = (sample.name, tuple(sorted(labels.items())))
                values[key] = values.get(key, 0.0) + float(sample.value)
    return values


def metric_samples_take(*, now: datetime | None = None) -> int:
    """Store one snapshot of the sampled series; delete snapshots past retention.
    Return how many samples were stored."""
    now = now or timezone.now()
    rows = [
        MetricSample(taken_at=now, name=name, labels=dict(labels), value=value)
        for (name, labels), value in sorted(metric_samples_collect().items())
        if math.isfinite(value)
    ]
    with transaction.atomic():
        MetricSample.objects.bulk_create(rows)
        MetricSample.objects.filter(taken_at__lt=now - settings.METRIC_SAMPLE_RETENTION).delete()
    return len(rows)


# Reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    values: dict[SeriesKey, float]

    def series(self, name: str) -> Iterator[tuple[dict[str, str], float]]:
        for (sample_name, labels), value in self.values.items():
            if sample_name == name:
                yield dict(labels), value


def snapshots_since(since: datetime) -> list[Snapshot]:
    """Every snapshot taken since `since`, oldest first (one query)."""
    grouped: dict[datetime, dict[SeriesKey, float]] = {}
    rows = (
        MetricSample.objects.filter(taken_at__gte=since)
        .order_by("taken_at")
        .values_list("taken_at", "name", "labels", "value")
    )
    for taken_at, name, labels, value in rows:
        key = (name, tuple(sorted((str(k), str(v)) for k, v in labels.items())))
        grouped.setdefault(taken_at, {})[key] = value
    return [Snapshot(taken_at, values) for taken_at, values in grouped.items()]


Point = tuple[datetime, float]
GroupBy = Callable[[dict[str, str]], str]


def counter_increase(before: float | None, after: float) -> float:
    """A counter's increase between two samples; a counter that went down (its process
    restarted) counts from zero, as Prometheus's increase() does."""
    if before is None or after < before:
        return after
    return after - before


def _increases(previous: Snapshot, current: Snapshot, name: str) -> Iterator[tuple[dict, float]]:
    for labels, value in current.series(name):
        before = previous.values.get((name, tuple(sorted(labels.items()))))
        source = labels.get("source")
        if (
            before is None
            and source is not None
            and (SOURCE_UP, (("source", source),)) not in previous.values
        ):
            continue  # its source did not answer before: the increase is unknown
        yield labels, counter_increase(before, value)


def per_minute_rates(snapshots: list[Snapshot], name: str, by: GroupBy) -> dict[str, list[Point]]:
    """Per group, the counter's increase per minute between consecutive snapshots, at
    the later one's time."""
    series: dict[str, list[Point]] = defaultdict(list)
    for previous, current in zip(snapshots, snapshots[1:], strict=False):
        minutes = (current.taken_at - previous.taken_at).total_seconds() / 60
        if minutes <= 0:
            continue
        groups: dict[str, float] = defaultdict(float)
        for labels, increase in _increases(previous, current, name):
            groups[by(labels)] += increase
        for group, increase in groups.items():
            series[group].append((current.taken_at, increase / minutes))
    return dict(series)


def histogram_quantile(quantile: float, buckets: dict[float, float]) -> float | None:
    """The quantile of cumulative bucket counts {upper bound: count} (+Inf included),
    interpolated linearly inside its bucket like Prometheus's histogram_quantile();
    None without observations. In the +Inf bucket it is the highest finite bound."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = quantile * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower if len(bounds) > 1 else None
            if count == below:
                return bound
            if bound == bounds[0] and bound <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def quantile_series(
    snapshots: list[Snapshot], name: str, quantiles: Iterable[float]
) -> dict[float, list[Point]]:
    """Per quantile, the histogram's quantile of the observations between consecutive
    snapshots (bucket increases summed over the other labels), at the later one's time;
    no point for an interval without observations."""
    series: dict[float, list[Point]] = {quantile: [] for quantile in quantiles}
    for previous, current in zip(snapshots, snapshots[1:], strict=False):
        buckets: dict[float, float] = defaultdict(float)
        for labels, increase in _increases(previous, current, name):
            buckets[float(labels["le"])] += increase
        for quantile, points in series.items():
            value = histogram_quantile(quantile, buckets)
            if value is not None:
                points.append((current.taken_at, value))
    return series


def gauge_series(
    snapshots: list[Snapshot], name: str, by: GroupBy, combine: Callable[[Iterable[float]], float]
) -> dict[str, list[Point]]:
    """Per group, the gauge at each snapshot (the group's series combined: sum, max)."""
    series: dict[str, list[Point]] = defaultdict(list)
    for snapshot in snapshots:
        groups: dict[str, list[float]] = defaultdict(list)
        for labels, value in snapshot.series(name):
            groups[by(labels)].append(value)
        for group, values in groups.items():
            series[group].append((snapshot.taken_at, combine(values)))
    return dict(series)
