"""The control API: its routes on the fake, and ``ControlClient`` for a fake elsewhere."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from fakes.warehouse.wire import CONTROL_PREFIX, REQUEST_PATH, Answer, WarehouseService, error


def answer_control(fake: WarehouseService, method: str, path: str, body: bytes) -> Answer:
    """Carry out one control API call on ``fake``; return the answer."""
    route = path.removeprefix(CONTROL_PREFIX).strip("/")
    try:
        changes = json.loads(body) if body.strip() else {}
    except ValueError:
        return error(400, "invalid_json", "the body is not JSON")
    if not isinstance(changes, dict):
        return error(400, "invalid_json", "the body is not a JSON object")
    if route == "behaviour" and method == "GET":
        return Answer(200, fake.behaviour())
    if route == "behaviour" and method == "POST":
        try:
            return Answer(200, fake.configure(**changes))
        except ValueError as exc:
            return error(400, "invalid_behaviour", str(exc))
    if route == "requests" and method == "GET":
        return Answer(200, {"requests": fake.requests()})
    if route == "shipments" and method == "GET":
        return Answer(200, {"shipments": fake.shipments()})
    if route == "callbacks" and method == "GET":
        return Answer(200, {"callbacks": fake.callbacks()})
    if route == "withdrawals" and method == "GET":
        return Answer(200, {"withdrawals": fake.withdrawals()})
    if route == "reset" and method == "POST":
        fake.reset()
        return Answer(200, {"reset": True})
    parts = route.split("/")
    if len(parts) == 4 and parts[0] == "shipments" and parts[2] == "returns" and method == "POST":
        try:
            lines = json.loads(body or b"{}").get("lines", [])
            return Answer(200, fake.send_return_received(unquote(parts[1]), parts[3], lines))
        except KeyError:
            return error(404, "unknown_shipment", f"no shipment {parts[1]}")
        except (ValueError, AttributeError):
            return error(400, "invalid_body", 'send {"lines": [{"sku", "disposition"}]}')
    if len(parts) == 3 and parts[0] == "shipments" and method == "POST":
        try:
            return Answer(200, fake.send_event(unquote(parts[1]), parts[2]))
        except KeyError:
            return error(404, "unknown_shipment", f"no shipment {parts[1]}")
        except ValueError as exc:
            return error(409, "invalid_event", str(exc))
    return error(404, "not_found", f"no control route {method} {path}")


class ControlClient:
    """The control API of a fake warehouse running elsewhere (a subprocess, a container).

    Same method names as ``WarehouseService``: ``configure``, ``behaviour``, ``requests``,
    ``shipments``, ``callbacks``, ``withdrawals``, ``send_event``, ``reset``.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the fake warehouse speaks plain http, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    @property
    def requests_url(self) -> str:
        return f"{self.url}{REQUEST_PATH}"

    def behaviour(self) -> dict[str, Any]:
        return self._call("GET", "behaviour")

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "behaviour", changes)

    def requests(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "requests")["requests"])

    def shipments(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "shipments")["shipments"])

    def callbacks(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "callbacks")["callbacks"])

    def withdrawals(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "withdrawals")["withdrawals"])

    def send_event(self, shipment_reference: str, event: str) -> dict[str, Any]:
        return self._call("POST", f"shipments/{quote(shipment_reference, safe='')}/{event}")

    def send_return_received(
        self, shipment_reference: str, return_id: str, lines: list[dict[str, Any]]
    ) -> dict[str, Any]:
        route = f"shipments/{quote(shipment_reference, safe='')}/returns/{return_id}"
        answer: dict[str, Any] = self._call("POST", route, {"lines": lines})
        return answer

    def reset(self) -> None:
        self._call("POST", "reset")

    def _call(self, method: str, route: str, payload: dict[str, Any] | None = None) -> Any:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(
            parts.hostname or "", parts.port, timeout=self.timeout
        )
        body = json.dumps(payload).encode() if payload is not None else b""
        try:
            connection.request(
                method,
                f"{parts.path}{CONTROL_PREFIX}{route}",
                body=body if method == "POST" else None,
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            answer = json.loads(response.read() or b"{}")
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"control {method} {route}: {response.status} {answer}")
        return answer
