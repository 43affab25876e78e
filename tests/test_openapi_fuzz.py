"""Schemathesis against the live OpenAPI schema, through the WSGI application: every
operation, as a customer and as staff, with generated valid and invalid requests.

No answer may be a 5xx, and every answer must be one the schema documents (status code,
content type, body). Examples are bounded per operation to keep the suite quick.

Left out: the Stripe webhook and the warehouse callback. Both refuse anything that is
not signed with a secret (400 / 401 before the body is read), so generated requests
never get past the signature; their hostile bodies are tested signed, in tests/inputs/.
Left out too: the live event streams, whose answer never ends (tests/events/test_live.py
reads them over real HTTP); and long polls answer at once here
(ORDER_EVENT_WAIT_MAX_SECONDS 0), so a generated `wait=30` costs no time.
"""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import StaffFactory, UserFactory
from tests.support.fake_stripe import FakeStripeServer

pytest_plugins = ("tests.support.fake_stripe",)

MAX_EXAMPLES = 12
SIGNED_ENDPOINTS = r"^/api/v1/(payments/stripe/webhook|fulfilment/callbacks)/$"
STREAMS = r"/stream/$"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {
            "examples": {"enabled": False},
            "coverage": {"enabled": True},
            "stateful": {"enabled": False},
        },
    }
)


@pytest.fixture
def _wsgi_keeps_the_test_connection() -> Iterator[None]:
    """The WSGI app closes the database connection after each request; the test's
    transaction lives on it (Django's test client does the same)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(
    db: None,
    _wsgi_keeps_the_test_connection: None,
    fake_stripe: FakeStripeServer,
    stocked_product: Any,
    django_settings: Any,
) -> Any:
    # Checkouts with a payment method reach the fake provider and come back declined,
    # rejected or authorized; never an outage.
    django_settings.STRIPE_API_BASE = fake_stripe.url
    django_settings.STRIPE_API_KEY = fake_stripe.api_key
    django_settings.PAYMENT_BREAKER_FAIL_MAX = 10_000
    django_settings.ORDER_EVENT_WAIT_MAX_SECONDS = 0
    stocked_product(quantities={"main": 1000}, sku="FUZZ-1")
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", get_wsgi_application(), config=CONFIG
    )
    return schema


@pytest.fixture
def django_settings(settings: Any) -> Any:
    return settings


@pytest.fixture
def tokens(db: None) -> dict[str, str]:
    return {
        role: Token.objects.create(user=factory()).key
        for role, factory in (("customer", UserFactory), ("staff", StaffFactory))
    }


schema = (
    schemathesis.pytest.from_fixture("api_schema")
    .exclude(path_regex=SIGNED_ENDPOINTS)
    .exclude(path_regex=STREAMS)
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_generated_requests_get_documented_answers_and_never_a_server_error(case, tokens):
    for token in tokens.values():
        response = case.call(headers={"Authorization": f"Token {token}"})
        print(
            "FUZZ",
            case.method,
            case.formatted_path,
            response.status_code,
            case.query,
            str(case.body)[:80],
        )
        case.validate_response(response, checks=CHECKS)
