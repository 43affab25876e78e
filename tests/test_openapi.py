"""The OpenAPI schema is valid and describes what the API really answers."""

import re
from io import StringIO
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import order_payload


def _schema(client: Any) -> dict[str, Any]:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def _api_paths(patterns: list[Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            paths |= _api_paths(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
            paths.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return paths


def _properties(schema: dict[str, Any], component: str) -> set[str]:
    return set(schema["components"]["schemas"][component]["properties"])


@pytest.mark.django_db
def test_schema_generates_without_warnings():
    output = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=output)
    assert "openapi: 3" in output.getvalue()


@pytest.mark.django_db
def test_schema_documents_every_api_path_and_problem_errors(anonymous_client):
    schema = _schema(anonymous_client)

    assert _api_paths(get_resolver().url_patterns) == {
        path for path in schema["paths"] if path.startswith("/api/v1/")
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "application/problem+json" in operation["responses"]["default"]["content"], (
                method,
                path,
            )


@pytest.mark.django_db
def test_interactive_docs_are_served_without_a_cdn(anonymous_client):
    response = anonymous_client.get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "cdn.jsdelivr.net" not in page


@pytest.mark.django_db
def test_checkout_and_reads_answer_exactly_the_documented_fields(
    anonymous_client, customer_client, staff_client, stocked_product
):
    schema = _schema(anonymous_client)
    product = stocked_product(quantities={"main": 5})

    order = customer_client.post(
        "/api/v1/orders/",
        order_payload([(product.sku, 1)]),
        format="json",
        HTTP_IDEMPOTENCY_KEY="schema-check",
    ).json()
    history = customer_client.get(f"/api/v1/orders/{order['id']}/history/").json()
    listed = customer_client.get("/api/v1/orders/").json()
    products = customer_client.get("/api/v1/products/").json()
    stock = staff_client.get("/api/v1/stock/").json()
    problem = customer_client.post("/api/v1/orders/", {}, format="json").json()

    assert set(order) == _properties(schema, "OrderOutput")
    assert set(order["lines"][0]) == _properties(schema, "OrderLineOutput")
    assert set(history[0]) == _properties(schema, "OrderStatusChangeOutput")
    assert set(listed) == _properties(schema, "PaginatedOrderOutputList")
    assert set(products[0]) == _properties(schema, "ProductOutput")
    assert set(stock[0]) == _properties(schema, "StockItemOutput")
    assert set(problem) <= _properties(schema, "Problem")
