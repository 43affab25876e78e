"""Send a test server's request on to another server and its answer back (the forward
and keep-alive proxies the payment tests put between the gateway and the fake)."""

import http.client
from collections.abc import Collection
from http.server import BaseHTTPRequestHandler

# Hop-by-hop and recomputed headers: never sent on.
NOT_RELAYED = ("host", "connection", "proxy-connection", "proxy-authorization", "content-length")


def relay(
    handler: BaseHTTPRequestHandler,
    *,
    host: str,
    port: int,
    path: str,
    body: bytes | None,
    close: bool,
    not_relayed: Collection[str] = NOT_RELAYED,
) -> None:
    """Send `handler`'s request (its method and headers, `body`) to `path` on host:port
    and write the answer's status, content type and body back; with `close`, tell the
    client the connection ends there."""
    headers = {
        name: value for name, value in handler.headers.items() if name.lower() not in not_relayed
    }
    upstream = http.client.HTTPConnection(host, port, timeout=10)
    try:
        upstream.request(handler.command, path, body=body, headers=headers)
        answer = upstream.getresponse()
        answer_body = answer.read()
    finally:
        upstream.close()
    handler.send_response_only(answer.status)
    handler.send_header("Content-Type", answer.getheader("Content-Type") or "application/json")
    handler.send_header("Content-Length", str(len(answer_body)))
    if close:
        handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(answer_body)
    handler.wfile.flush()
