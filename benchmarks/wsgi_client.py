"""Requests through the WSGI application, in this process."""

import io
import json
import sys
from collections.abc import Callable
from typing import Any


class InProcessClient:
    """Call the WSGI application directly: the gunicorn request path minus HTTP parsing."""

    def __init__(self) -> None:
        from django.core.wsgi import get_wsgi_application

        self.app = get_wsgi_application()
        self.last_headers: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str,
        body: Any = None,
        key: str | None = None,
        query: str = "",
        if_none_match: str | None = None,
    ) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": f"Token {token}",
            "HTTP_ACCEPT": "application/json",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(payload)),
            "wsgi.input": io.BytesIO(payload),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        if key is not None:
            environ["HTTP_IDEMPOTENCY_KEY"] = key
        if if_none_match is not None:
            environ["HTTP_IF_NONE_MATCH"] = if_none_match
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[..., Any]:
            statuses.append(status)
            self.last_headers = dict(headers)
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # sends request_finished, as gunicorn does
        return int(statuses[0].split()[0]), json.loads(content) if content else None
