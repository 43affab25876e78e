"""The threaded HTTP server and its request handler: routes requests to the fake."""

from __future__ import annotations

import json
import logging
import socketserver
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from core.signing import SIGNATURE_HEADER
from fakes.warehouse.control import answer_control
from fakes.warehouse.wire import (
    CONTROL_PREFIX,
    IDEMPOTENCY_KEY_HEADER,
    MAX_BODY_BYTES,
    REQUEST_PATH,
    Answer,
    Reply,
    WarehouseService,
    error,
    withdraw_target,
)

SOCKET_TIMEOUT_SECONDS = 10.0

logger = logging.getLogger(__name__)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: WarehouseService) -> None:
        self.fake = fake
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server
    timeout = SOCKET_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        fake = self.server.fake
        self.close_connection = True
        with fake.handling():
            body = self._read_body()
            if body is None:
                return
            path = urlsplit(self.path).path
            if path.startswith(CONTROL_PREFIX):
                self._answer(answer_control(fake, self.command, path, body))
            elif path == REQUEST_PATH and self.command == "POST":
                self._fulfil(body)
            elif path == REQUEST_PATH:
                self._answer(error(405, "method_not_allowed", "POST a fulfilment request"))
            elif (request_id := withdraw_target(path)) is not None and self.command == "POST":
                self._withdraw(request_id, body)
            elif request_id is not None:
                self._answer(error(405, "method_not_allowed", "POST a withdrawal"))
            else:
                self._answer(error(404, "not_found", f"no route {self.command} {path}"))

    def _fulfil(self, body: bytes) -> None:
        key, signature = self._key_and_signature()
        self._reply(self.server.fake.handle_fulfilment(body, key, signature))

    def _withdraw(self, request_id: str, body: bytes) -> None:
        key, signature = self._key_and_signature()
        self._reply(self.server.fake.handle_withdraw(request_id, body, key, signature))

    def _key_and_signature(self) -> tuple[str | None, str | None]:
        return self.headers.get(IDEMPOTENCY_KEY_HEADER), self.headers.get(SIGNATURE_HEADER)

    def _reply(self, reply: Reply) -> None:
        if reply.hang_seconds is not None:
            self.server.fake.withhold(reply)
            return  # close the connection without a word
        extra = {"Idempotent-Replayed": "true"} if reply.replayed else {}
        self._answer(reply.answer, extra)

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if self.command in ("GET", "DELETE"):
                return b""
            self._answer(error(411, "length_required", "send Content-Length"))
            return None
        try:
            length = int(length_header)
        except ValueError:
            self._answer(error(400, "bad_content_length", "Content-Length is not a number"))
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            self._answer(error(413, "too_large", f"at most {MAX_BODY_BYTES} bytes"))
            return None
        return self.rfile.read(length) if length else b""

    def _answer(self, answer: Answer, extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(answer.payload).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
