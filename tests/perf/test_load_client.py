"""The benchmark's load client (benchmarks.load._Client) against a real HTTP/1.1 server
on loopback: bodies by Content-Length and chunked, ETags, 304s without a body, one
connection kept alive across requests, and a new one after the server closes it."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.load import _Client


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello, ", b"chunked world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/cached":
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.end_headers()
            return
        body = f"{self.command} {self.path} {self.headers.get('X-Probe', '')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"v1"')
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_load_client_keeps_one_connection_alive_and_reads_every_kind_of_answer(port):
    # Given a client of an HTTP/1.1 server that keeps connections alive
    client = _Client(port)

    # When it sends requests of each kind on it
    answers = [
        client.send("GET", "/plain", None, {"X-Probe": "a"}),
        client.send("GET", "/chunked", None, {}),
        client.send("GET", "/cached", None, {"If-None-Match": '"v1"'}),
        client.send("POST", "/orders", b'{"lines": []}', {"Content-Type": "application/json"}),
        client.send("GET", "/plain", None, {"X-Probe": "b"}),
    ]

    # Then each answer is read whole, and all went over one connection
    assert answers == [
        (200, b"GET /plain a", 0, '"v1"'),
        (200, b"hello, chunked world", 0, None),
        (304, b"", 0, '"v1"'),
        (201, b'{"lines": []}', 0, None),
        (200, b"GET /plain b", 0, '"v1"'),
    ]
    assert client.connects == 1
    client.close()


def test_load_client_opens_a_new_connection_after_the_server_closes_one(port):
    # Given a server that closes the connection after an answer
    client = _Client(port)
    assert client.send("GET", "/close", None, {})[:2] == (200, b"GET /close ")

    # When the client sends the next request, Then it goes over a new connection
    assert client.send("GET", "/plain", None, {})[:2] == (200, b"GET /plain ")
    assert client.connects == 2
    client.close()
