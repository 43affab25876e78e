"""The admin's operations page: the dashboard's few figures for the last hour, as charts.

The figures are those of ops/grafana/oms-dashboard.json, computed from the metric
samples the beat task takes each minute (`core.metric_samples`), with one query.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.safestring import SafeString

from core.metric_samples import (
    Point,
    Snapshot,
    gauge_series,
    per_minute_rates,
    quantile_series,
    snapshots_since,
)
from core.svg_charts import Series, line_chart

WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Chart:
    title: str
    svg: SafeString


@dataclass(frozen=True)
class OperationsPageData:
    start: datetime
    end: datetime
    charts: list[Chart]
    # Each dependency's breaker state at the latest snapshot.
    breaker_states: list[tuple[str, str]]
    last_sample_at: datetime | None


def _label(name: str) -> Callable[[dict[str, str]], str]:
    return lambda labels: labels.get(name, "")


def _series(groups: dict[str, list[Point]], start: datetime) -> list[Series]:
    return [
        Series(name=name, points=[(at, value) for at, value in points if at >= start])
        for name, points in sorted(groups.items())
    ]


def _quantiles(snapshots: list[Snapshot], name: str, start: datetime) -> list[Series]:
    by_quantile = quantile_series(snapshots, name, (0.5, 0.99))
    return _series({"p50": by_quantile[0.5], "p99": by_quantile[0.99]}, start)


def _breakers_open(snapshots: list[Snapshot]) -> dict[str, list[Point]]:
    opened = [
        Snapshot(
            snapshot.taken_at,
            {
                key: value
                for key, value in snapshot.values.items()
                if key[0] == "oms_circuit_breaker_state" and ("state", "open") in key[1]
            },
        )
        for snapshot in snapshots
    ]
    return gauge_series(opened, "oms_circuit_breaker_state", _label("breaker"), max)


def _breaker_states(snapshot: Snapshot | None) -> list[tuple[str, str]]:
    if snapshot is None:
        return []
    return sorted(
        (labels["breaker"], labels["state"])
        for labels, value in snapshot.series("oms_circuit_breaker_state")
        if value == 1
    )


def operations_page_data(*, now: datetime | None = None) -> OperationsPageData:
    """The charts of the last hour up to `now`."""
    end = now or timezone.now()
    start = end - WINDOW
    # One snapshot before the window, so the first interval inside it has a rate.
    snapshots = [
        snapshot
        for snapshot in snapshots_since(start - 2 * settings.METRIC_SAMPLE_INTERVAL)
        if snapshot.taken_at <= end
    ]
    figures: list[tuple[str, list[Series], str]] = [
        (
            "Orders placed per minute, by outcome",
            _series(
                per_minute_rates(snapshots, "oms_orders_placed_total", _label("outcome")), start
            ),
            "",
        ),
        (
            "Checkout latency p50 / p99",
            _quantiles(snapshots, "oms_checkout_duration_seconds_bucket", start),
            "s",
        ),
        (
            "API errors per minute, by code",
            _series(per_minute_rates(snapshots, "oms_api_errors_total", _label("code")), start),
            "",
        ),
        (
            "Outbox backlog, by queue",
            _series(gauge_series(snapshots, "oms_outbox_backlog", _label("queue"), sum), start),
            "",
        ),
        (
            "Outbox: age of the oldest message, by queue",
            _series(
                gauge_series(
                    snapshots, "oms_outbox_oldest_message_age_seconds", _label("queue"), max
                ),
                start,
            ),
            "s",
        ),
        (
            "Dead letters not re-driven",
            _series(
                gauge_series(snapshots, "oms_dead_letters_unresolved", lambda _: "unresolved", sum),
                start,
            ),
            "",
        ),
        (
            "Circuit breakers open (1 = open), by dependency",
            _series(_breakers_open(snapshots), start),
            "",
        ),
        (
            "Webhook delivery lag p50 / p99",
            _quantiles(snapshots, "oms_webhook_delivery_lag_seconds_bucket", start),
            "s",
        ),
    ]
    charts = [
        Chart(
            title=title, svg=line_chart(title=title, series=series, start=start, end=end, unit=unit)
        )
        for title, series, unit in figures
    ]
    latest = snapshots[-1] if snapshots else None
    return OperationsPageData(
        start=start,
        end=end,
        charts=charts,
        breaker_states=_breaker_states(latest),
        last_sample_at=latest.taken_at if latest else None,
    )
