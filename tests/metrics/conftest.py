"""Reading /metrics in tests: a scrape as {(sample name, labels): value}."""

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

# The checkout fixtures of the payment tests (fake Stripe behind a proxy).
from tests.payments.conftest import checkout, product, provider  # noqa: F401

METRICS_TOKEN = "test-metrics-token"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the scrape has no such series."""
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def scrape(settings: Any, anonymous_client: Any) -> Any:
    """GET /metrics with the token; the parsed samples."""
    settings.METRICS_TOKEN = METRICS_TOKEN

    def read() -> Samples:
        response = anonymous_client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_samples(response.content.decode())

    return read
