"""What every API request goes through, kept whole where it was made cheaper (issue 11):
content negotiation remembered per Accept header, the message storage built only when
used, the labelled request metrics looked up once, the request id read from META."""

import json

import pytest
from django.urls import resolve
from prometheus_client import REGISTRY

from tests.factories import ProductFactory

PRODUCTS = "/api/v1/products/"


@pytest.mark.django_db
def test_content_negotiation_answers_each_accept_header_as_drf_does(customer_client):
    ProductFactory()

    # An Accept header nothing can answer is refused, every time (never remembered as a
    # success), as problem+json
    for _ in range(2):
        refused = customer_client.get(PRODUCTS, HTTP_ACCEPT="text/html")
        assert refused.status_code == 406
        assert refused["Content-Type"] == "application/problem+json"
        assert refused.json()["code"] == "not_acceptable"

    # JSON parameters the client asks for are honoured, and only for that header
    for _ in range(2):
        indented = customer_client.get(PRODUCTS, HTTP_ACCEPT="application/json; indent=4")
        assert indented.status_code == 200
        assert b'\n    {\n        "sku"' in indented.content
        plain = customer_client.get(PRODUCTS, HTTP_ACCEPT="*/*")
        assert plain.status_code == 200
        assert b"\n" not in plain.content
        assert json.loads(plain.content) == json.loads(indented.content)

    # A format nothing renders is refused whatever the Accept header (404, as DRF does)
    assert customer_client.get(PRODUCTS + "?format=xml", HTTP_ACCEPT="*/*").status_code == 404
    assert customer_client.get(PRODUCTS + "?format=json", HTTP_ACCEPT="*/*").status_code == 200


@pytest.mark.django_db
def test_an_api_request_builds_no_message_storage_and_sets_no_message_cookie(customer_client):
    from django.utils.functional import empty

    response = customer_client.get(PRODUCTS)
    assert response.status_code == 200
    assert response.wsgi_request._messages._wrapped is empty
    assert "messages" not in response.cookies


@pytest.mark.django_db
def test_a_304_is_counted_and_timed_under_its_route_and_echoes_the_request_id(customer_client):
    ProductFactory()
    etag = customer_client.get(PRODUCTS)["ETag"]
    route = resolve(PRODUCTS).view_name
    counted = {"route": route, "method": "GET", "status": "304"}
    before = REGISTRY.get_sample_value("oms_http_requests_total", counted) or 0
    timed_before = (
        REGISTRY.get_sample_value("oms_http_request_duration_seconds_count", {"route": route}) or 0
    )

    # Twice: the second through the labelled instruments this process already looked up
    for number in (1, 2):
        response = customer_client.get(
            PRODUCTS, HTTP_IF_NONE_MATCH=etag, HTTP_X_REQUEST_ID=f"probe-{number}"
        )
        assert response.status_code == 304
        assert response["X-Request-ID"] == f"probe-{number}"
        assert REGISTRY.get_sample_value("oms_http_requests_total", counted) == before + number
        assert (
            REGISTRY.get_sample_value("oms_http_request_duration_seconds_count", {"route": route})
            == timed_before + number
        )

    # A request id that is not sane is replaced by a new one
    replaced = customer_client.get(PRODUCTS, HTTP_X_REQUEST_ID="bad id\n")
    assert replaced["X-Request-ID"] != "bad id\n"
    assert len(replaced["X-Request-ID"]) == 32
