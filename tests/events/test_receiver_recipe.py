"""The README's receiver recipe, run as written against real deliveries: it verifies
the signature (either secret during a rotation), refuses a forged or stale body and
handles each event once."""

import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from core.outbox import outbox_handle
from core.signing import SIGNATURE_HEADER, sign
from tests.events.conftest import confirmed_order, events_messages, subscribe

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[2] / "README.md"


def recipe() -> dict[str, Any]:
    section = README.read_text().split("### Verifying a delivery", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {"__name__": "recipe"}
    exec(compile(code[1], "README.md", "exec"), namespace)  # noqa: S102
    return namespace


def test_the_readme_receiver_verifies_and_handles_each_event_once(receiver):
    # Given deliveries signed during a rotation, and the recipe holding the old secret
    subscription = subscribe(
        receiver.url("/recipe"),
        name="recipe",
        previous_secret="old-secret",
        previous_secret_expires_at=timezone.now() + timedelta(hours=1),
    )
    order = confirmed_order()
    for message in events_messages(order):
        outbox_handle(message.pk)
    first, second = receiver.on("/recipe")
    handled: list[dict[str, Any]] = []
    code = recipe()
    code["handle"] = handled.append

    def receive(request: Any, body: bytes | None = None) -> int:
        return code["receive"](body or request.body, request.headers[SIGNATURE_HEADER])

    # When it receives both, the first one again, and a forged and a stale one
    for secrets in (["old-secret"], [subscription.secret]):
        code["SECRETS"] = secrets
        assert receive(first) == 204
    assert receive(second) == 204
    forged = json.dumps({**first.event, "id": "forged"}).encode()
    assert receive(first, forged) == 400
    stale = sign(first.body, subscription.secret, int(time.time()) - 3600)
    assert code["receive"](first.body, stale) == 400

    # Then each event was handled once
    assert [event["sequence"] for event in handled] == [1, 2]
