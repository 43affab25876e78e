"""Under an ASGI server, each request whose view is synchronous is served by the WSGI
application in one hop to a worker thread; async views (long polls, live streams) stay
on Django's ASGI handler.

Django's ASGI handler runs every MiddlewareMixin middleware in async mode, so each of
them hops to the sync thread and back for process_request and again for
process_response: about 40 thread hops for a sync view behind this project's stack,
3.7 times the CPU of the same request through the WSGI handler (an order's 304: 9.0 ms
against 2.5 ms in-process). The WSGI application has the same middleware (request ids,
metrics, logs, tracing) and ends each request as gunicorn's sync workers do (closing
the response sends request_finished, which returns the database connection).

The response of a sync view is read whole in the thread and sent from the event loop:
this project's sync views answer with bodies, not streams (its streams are async views).
"""

from collections.abc import Awaitable, Callable, Mapping
from tempfile import SpooledTemporaryFile
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from asgiref.wsgi import WsgiToAsgiInstance
from django.urls import Resolver404, get_resolver

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WsgiApp = Callable[..., Any]


def view_is_async(path: str) -> bool:
    """Whether the view that `path` resolves to is a coroutine function (no match: not:
    Django's sync 404 answers it)."""
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


class _Exchange(WsgiToAsgiInstance):
    """One request through the WSGI application: asgiref's environ, the response
    collected in the thread, the iterable closed there."""

    def __init__(self, wsgi_application: WsgiApp, scope: Scope) -> None:
        super().__init__(wsgi_application)
        self.scope = scope

    def start_response(
        self, status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> None:
        # Django's WSGI handler writes each Set-Cookie value with a leading space
        # (cookie.output(header="")), which WSGI servers strip and HTTP/1.1 forbids.
        headers = [(name, value.strip()) for name, value in response_headers]
        super().start_response(status, headers, exc_info)

    def respond(self, body: Any) -> tuple[dict[str, Any], bytes]:
        environ = self.build_environ(self.scope, body)
        result = self.wsgi_application(environ, self.start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return self.response_start, content


class SyncViewsOverWsgi:
    """The ASGI application: HTTP requests for sync views to `wsgi_application` in one
    thread hop (thread-sensitive, as Django runs sync views under ASGI), everything else
    (async views, lifespan) to `asgi_application`."""

    def __init__(self, asgi_application: AsgiApp, wsgi_application: WsgiApp) -> None:
        self.asgi_application = asgi_application
        self.wsgi_application = wsgi_application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or view_is_async(scope["path"]):
            await self.asgi_application(scope, receive, send)
            return
        exchange = _Exchange(self.wsgi_application, scope)
        with SpooledTemporaryFile(max_size=65536) as body:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body.write(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body.seek(0)
            start, content = await sync_to_async(exchange.respond)(body)
        await send(start)
        await send({"type": "http.response.body", "body": content})
