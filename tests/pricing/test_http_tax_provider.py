"""The HTTP tax provider against a tax service on loopback: its answer, a timeout, a
failing service and the circuit breaker in front of it."""

import time

import pytest

from inventory.models import Reservation, StockItem
from orders.models import Order
from tests.conftest import new_idempotency_key
from tests.metrics.conftest import parse_samples, value
from tests.pricing.conftest import checkout_post

pytestmark = pytest.mark.django_db


def test_the_order_carries_the_taxes_the_service_answered(
    de_rates, stocked_product, customer_client, tax_service
):
    # given a tax service that taxes at 20%, rounding down
    stocked_product(sku="CLIP", price=55, currency="EUR")

    # when a customer orders three clips by express
    response = checkout_post(customer_client, [("CLIP", 3)], shipping_method="express")

    # then the service was sent the lines and the flat shipping, and the order carries
    # its taxes (33 on 1.65, 259 on 12.95), not the flat 19%
    assert response.status_code == 201, response.json()
    (sent,) = tax_service.requests
    assert sent == {
        "country": "DE",
        "currency": "EUR",
        "shipping_method": "express",
        "shipping_amount": 1295,
        "lines": [{"sku": "CLIP", "unit_price": 55, "quantity": 3, "amount": 165}],
    }
    body = response.json()
    assert body["lines"][0]["tax_amount"] == 33
    assert (body["shipping"], body["tax"], body["total"]) == (1295, 33 + 259, 165 + 1295 + 292)


def test_a_slow_tax_service_fails_the_checkout_and_nothing_is_reserved(
    de_rates, stocked_product, customer_client, tax_service
):
    # given a tax service slower than TAX_SERVICE_TIMEOUT_SECONDS (0.5 s)
    product = stocked_product(sku="CLIP", price=55, currency="EUR")
    tax_service.delay = 2.0

    # when a customer checks out
    started = time.monotonic()
    response = checkout_post(customer_client, [("CLIP", 1)])

    # then 503 tax_service_unavailable after about the timeout, with Retry-After, and no
    # order or reservation exists
    assert time.monotonic() - started < 1.9
    assert response.status_code == 503, response.json()
    assert response.json()["code"] == "tax_service_unavailable"
    assert response["Retry-After"] == "60"
    assert not Order.objects.exists()
    assert not Reservation.objects.exists()
    assert StockItem.objects.get(product=product).reserved == 0


def test_with_the_flat_fallback_a_slow_tax_service_falls_back_to_the_flat_rates(
    de_rates, stocked_product, customer_client, tax_service, settings
):
    # given a slow tax service and TAX_SERVICE_FALLBACK=flat
    stocked_product(sku="CLIP", price=55, currency="EUR")
    tax_service.delay = 2.0
    settings.TAX_SERVICE_FALLBACK = "flat"

    # when a customer checks out three clips
    response = checkout_post(customer_client, [("CLIP", 3)])

    # then the order is placed with the flat DE tax: 19% of 1.65 is 31.35 -> 31, and of
    # the 4.95 shipping 94.05 -> 94
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["lines"][0]["tax_amount"] == 31
    assert (body["shipping"], body["tax"]) == (495, 31 + 94)


@pytest.mark.parametrize(
    "answer",
    [
        {"lines": []},
        {"lines": [{"sku": "CLIP", "tax_amount": -1}]},
        {"lines": [{"sku": "CLIP", "tax_amount": "3"}]},
        ["not", "an", "object"],
    ],
    ids=["a-line-missing", "negative", "a-string", "not-an-object"],
)
def test_an_unusable_answer_is_a_failure(
    de_rates, stocked_product, customer_client, tax_service, answer
):
    # given a tax service whose 200 answer does not give every line a usable tax
    stocked_product(sku="CLIP", price=55, currency="EUR")
    tax_service.answer = lambda payload: answer

    # when a customer checks out
    response = checkout_post(customer_client, [("CLIP", 1)])

    # then the checkout fails cleanly
    assert response.status_code == 503, response.json()
    assert response.json()["code"] == "tax_service_unavailable"
    assert not Order.objects.exists()


def test_the_breaker_opens_after_repeated_failures_and_answers_without_calling(
    de_rates, stocked_product, customer_client, tax_service
):
    # given a tax service that answers 500, and TAX_BREAKER_FAIL_MAX = 3
    stocked_product(sku="CLIP", price=55, currency="EUR", quantities={"main": 50})
    tax_service.status = 500

    # when customers check out three times, then again
    failures = [checkout_post(customer_client, [("CLIP", 1)]) for _ in range(3)]
    assert len(tax_service.requests) == 3
    tax_service.delay = 5.0  # a call now would be slow: the breaker must not make it
    started = time.monotonic()
    refused = checkout_post(customer_client, [("CLIP", 1)])
    elapsed = time.monotonic() - started

    # then the first three asked the service and failed, and the fourth failed at once
    # without asking it
    assert [response.status_code for response in failures] == [503, 503, 503]
    assert refused.status_code == 503
    assert refused.json()["code"] == "tax_service_unavailable"
    assert len(tax_service.requests) == 3
    assert elapsed < 1.0
    assert not Order.objects.exists()


def test_a_retry_with_the_same_key_after_the_service_recovers_places_the_order(
    de_rates, stocked_product, customer_client, tax_service
):
    # given a checkout that failed because the tax service answered 502
    stocked_product(sku="CLIP", price=55, currency="EUR")
    tax_service.status = 502
    key = new_idempotency_key()
    assert checkout_post(customer_client, [("CLIP", 1)], key=key).status_code == 503

    # when the service recovers and the client retries with the same Idempotency-Key
    tax_service.status = 200
    response = checkout_post(customer_client, [("CLIP", 1)], key=key)

    # then the order is placed once, with the service's tax
    assert response.status_code == 201, response.json()
    assert response.json()["lines"][0]["tax_amount"] == 11
    assert Order.objects.count() == 1


def test_metrics_report_the_tax_service_breaker(
    de_rates, stocked_product, customer_client, anonymous_client, tax_service, settings
):
    # given TAX_PROVIDER=http and a process that has not called the tax service yet
    stocked_product(sku="CLIP", price=55, currency="EUR", quantities={"main": 50})
    settings.METRICS_TOKEN = "tax-metrics-token"

    def breaker_states() -> dict[str, float]:
        response = anonymous_client.get("/metrics", HTTP_AUTHORIZATION="Bearer tax-metrics-token")
        assert response.status_code == 200
        samples = parse_samples(response.content.decode())
        return {
            state: value(samples, "oms_circuit_breaker_state", breaker="tax-service", state=state)
            for state in ("closed", "open")
        }

    # when /metrics is scraped before and after TAX_BREAKER_FAIL_MAX failed checkouts
    before = breaker_states()
    tax_service.status = 500
    for _ in range(3):
        checkout_post(customer_client, [("CLIP", 1)])
    after = breaker_states()

    # then it reports the breaker closed, then open
    assert before == {"closed": 1, "open": 0}
    assert after == {"closed": 0, "open": 1}
