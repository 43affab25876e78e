"""A real HTTP receiver of webhooks on loopback (a plugin: load it with
``pytest_plugins = ("tests.support.webhook_receiver",)``, or import ``receiver``)."""

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP server that records every POST. `fail_next[path] = n` answers 500
    to the next n requests on that path; `delay` makes every answer that slow; it counts
    how many requests of one order it was answering at once (`overlaps`)."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    in_flight: dict[str, int] = field(default_factory=dict)
    overlaps: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def on(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            target = state["receiver"]
            order_id = json.loads(body).get("order_id", "")
            with target.lock:
                target.in_flight[order_id] = target.in_flight.get(order_id, 0) + 1
                if target.in_flight[order_id] > 1:
                    target.overlaps += 1
            time.sleep(target.delay)
            with target.lock:
                target.in_flight[order_id] -= 1
                target.received.append(Received(self.path, dict(self.headers), body))
                failing = target.fail_next.get(self.path, 0) > 0
                if failing:
                    target.fail_next[self.path] -= 1
            answer = b"boom: try later" if failing else b""
            self.send_response(500 if failing else 204)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
