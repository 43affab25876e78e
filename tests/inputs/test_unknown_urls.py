"""URLs that match nothing, and writes to an endpoint without its trailing slash, are
problem+json under every settings module: 404 not_found, naming the endpoint a missing
slash meant. Never Django's HTML page (DEBUG) nor its APPEND_SLASH RuntimeError."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import new_idempotency_key
from tests.inputs.conftest import assert_problem, stored_state

ROOT = Path(__file__).resolve().parents[2]

# Runs under the settings module named in the environment; prints what each request got.
PROBE = """
import json
import django
django.setup()
from django.test import Client

client = Client(HTTP_HOST="localhost")
answers = {}
for method, path in [
    ("post", "/api/v1/orders"),
    ("put", "/api/v1/products"),
    ("get", "/api/v1/no-such-thing/"),
    ("post", "/api/v1/no-such-thing"),
    ("get", "/nowhere"),
]:
    response = client.generic(method.upper(), path, "{}", content_type="application/json")
    answers[f"{method} {path}"] = [
        response.status_code, response["Content-Type"], response.content.decode()
    ]
response = client.get("/api/v1/products")
answers["get /api/v1/products"] = [response.status_code, response.get("Location", "")]
print(json.dumps(answers))
"""


@pytest.mark.parametrize("module", ["local", "test", "production"])
def test_unknown_urls_and_missing_slashes_are_problem_json_under_every_settings_module(module):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": f"config.settings.{module}",
        "DJANGO_SECRET_KEY": "probe-only",
    }
    env.pop("DJANGO_DEBUG", None)
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-3000:]
    answers = json.loads(run.stdout.strip().splitlines()[-1])

    for request, (status, content_type, body) in (
        (name, answer) for name, answer in answers.items() if name != "get /api/v1/products"
    ):
        assert (status, content_type) == (404, "application/problem+json"), (request, body[:300])
        assert json.loads(body)["code"] == "not_found", request
    assert "/api/v1/orders/" in json.loads(answers["post /api/v1/orders"][2])["detail"]
    assert "/api/v1/products/" in json.loads(answers["put /api/v1/products"][2])["detail"]
    assert "trailing slash" not in json.loads(answers["get /nowhere"][2])["detail"]
    # A read without the slash is still redirected, as Django does.
    assert answers["get /api/v1/products"] == [301, "/api/v1/products/"]


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_a_checkout_without_the_trailing_slash_is_a_404_naming_the_endpoint(
    customer_client, settings, debug
):
    settings.DEBUG = debug
    before = stored_state()

    response = customer_client.post(
        "/api/v1/orders",
        {"lines": []},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )

    problem = assert_problem(response, 404, "not_found")
    assert "/api/v1/orders/" in problem["detail"]
    assert stored_state() == before


@pytest.mark.django_db
def test_an_unknown_url_under_debug_is_problem_json(customer_client, settings):
    settings.DEBUG = True

    response = customer_client.get("/api/v1/orders/not-a-uuid/")

    problem = assert_problem(response, 404, "not_found")
    assert problem["detail"] == "No such resource."
