"""Structured logs: every line says which request, user, order, task and outbox message
it belongs to, and the request id travels from the API into the outbox and the worker."""

import io
import json
import logging
from typing import Any

import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from core import log_context
from core.actors import Actor
from core.models import OutboxMessage
from core.tasks import outbox_handle_task
from flows.place import OrderLineRequest, order_place
from tests.factories import UserFactory

pytest_plugins = ("tests.support.smtp",)


@pytest.fixture
def json_log() -> Any:
    """The JSON lines the configured formatter writes, as the console handler would."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    formatter: dict[str, Any] = settings.LOGGING["formatters"]["json"]  # type: ignore[index]
    handler.setFormatter(
        import_string(formatter["()"])(
            formatter["format"], rename_fields=formatter["rename_fields"]
        )
    )
    handler.addFilter(log_context.ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.django_db
def test_the_request_id_travels_into_the_outbox_and_the_worker_logs(
    stocked_product, staff_client, smtp_backend, json_log
):
    # Given staff confirm an order, their request tagged with an id
    product = stocked_product(quantities={"main": 5})
    order = order_place(
        customer=UserFactory(),
        email="ada@example.com",
        shipping_address={
            "name": "Ada",
            "line1": "1 Way",
            "city": "London",
            "postal_code": "N1",
            "country": "GB",
        },
        lines=[OrderLineRequest(product.sku, 1)],
        actor=Actor.system(),
    )
    response = staff_client.post(
        f"/api/v1/orders/{order.pk}/transitions/",
        {"transition": "confirm"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="log-1",
        HTTP_X_REQUEST_ID="req-from-checkout-7",
    )
    assert response.status_code == 200, response.json()

    # Then the work it asked for remembers the request
    email = OutboxMessage.objects.get(topic="order.confirmed", handler__startswith="notifications")
    assert email.request_id == "req-from-checkout-7"

    # When a worker handles it
    outbox_handle_task.apply(args=[email.pk], task_id="task-42")

    # Then its log lines name the request, the order, the task and the message
    lines = [line for line in json_log() if line["logger"] == "notifications.services"]
    assert lines, json_log()
    line = lines[-1]
    assert (line["level"], line["request_id"], line["task_id"]) == (
        "INFO",
        "req-from-checkout-7",
        "task-42",
    )
    assert (line["order_id"], line["outbox_message_id"]) == (str(order.pk), str(email.pk))
    assert {"time", "message"} <= set(line)
    # And outside the task the context is empty again
    assert log_context.current("task_id") == ""


def test_the_system_acts_for_the_request_that_caused_the_work():
    with log_context.bound(request_id="req-9"):
        assert Actor.system().request_id == "req-9"
        assert Actor.system(request_id="explicit").request_id == "explicit"
    assert Actor.system().request_id == ""
