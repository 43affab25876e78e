"""Tax and shipping: rates in the database, a tax service on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rest_framework.test import APIClient

from core.breakers import circuit_breakers_reset
from pricing.models import ShippingRate, TaxRate
from tests.conftest import new_idempotency_key, order_payload
from tests.payments.conftest import provider  # noqa: F401

DE_ADDRESS = {
    "name": "Grace Hopper",
    "line1": "1 Unter den Linden",
    "line2": "",
    "city": "Berlin",
    "postal_code": "10117",
    "country": "DE",
}


@pytest.fixture
def de_rates(db: None) -> None:
    """DE: 19% tax, shipping taxed; standard 4.95 EUR, express 12.95 EUR."""
    TaxRate.objects.create(country="DE", basis_points=1900, shipping_taxable=True)
    ShippingRate.objects.create(country="DE", method="standard", currency="EUR", amount=495)
    ShippingRate.objects.create(country="DE", method="express", currency="EUR", amount=1295)


def checkout_post(
    client: APIClient,
    lines: list[tuple[str, int]],
    *,
    address: dict[str, Any] | None = None,
    key: str | None = None,
    **fields: Any,
) -> Any:
    payload = order_payload(lines, shipping_address=address or DE_ADDRESS, **fields)
    return client.post(
        "/api/v1/orders/",
        payload,
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or new_idempotency_key(),
    )


class TaxService:
    """A tax service on loopback: answers each request with `answer(payload)` after
    `delay` seconds; records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.0
        self.status = 200
        self.answer: Callable[[dict[str, Any]], Any] = self.tax_at(2000)
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.requests.append(body)
                time.sleep(service.delay)
                data = json.dumps(service.answer(body)).encode()
                try:
                    self.send_response(service.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tax"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def tax_at(basis_points: int) -> Callable[[dict[str, Any]], Any]:
        """An answer that taxes each line and the shipping at a rate, rounding down (a
        rounding oms would not choose, so a test sees whose numbers the order carries)."""

        def answer(payload: dict[str, Any]) -> Any:
            return {
                "lines": [
                    {"sku": line["sku"], "tax_amount": line["amount"] * basis_points // 10000}
                    for line in payload["lines"]
                ],
                "shipping_tax_amount": payload["shipping_amount"] * basis_points // 10000,
            }

        return answer


@pytest.fixture
def tax_service(settings: Any) -> Iterator[TaxService]:
    """TAX_PROVIDER=http against a tax service on loopback; a fresh breaker."""
    service = TaxService()
    service.thread.start()
    settings.TAX_PROVIDER = "http"
    settings.TAX_SERVICE_URL = service.url
    settings.TAX_SERVICE_TIMEOUT_SECONDS = 0.5
    settings.TAX_SERVICE_FALLBACK = "error"
    settings.TAX_BREAKER_FAIL_MAX = 3
    settings.TAX_BREAKER_RESET_SECONDS = 60
    circuit_breakers_reset()
    try:
        yield service
    finally:
        service.server.shutdown()
        service.server.server_close()
        circuit_breakers_reset()
