"""Stock metrics read at scrape time: units held in reservations."""

from collections.abc import Iterator

from django.db.models import Sum
from prometheus_client.core import GaugeMetricFamily, Metric

from core.metrics import scrape_collector
from inventory.models import StockItem


@scrape_collector
def reserved_stock_metrics() -> Iterator[Metric]:
    """oms_stock_reserved_units{warehouse}: one aggregate over the stock items."""
    family = GaugeMetricFamily(
        "oms_stock_reserved_units",
        "Units held in reservations (StockItem.reserved), per warehouse.",
        labels=["warehouse"],
    )
    rows = (
        StockItem.objects.values("warehouse__code")
        .annotate(reserved=Sum("reserved"))
        .order_by("warehouse__code")
    )
    for row in rows:
        family.add_metric([row["warehouse__code"]], row["reserved"] or 0)
    yield family
