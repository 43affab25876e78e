"""Views whose handlers are coroutines, for requests that wait (long polls, streams)."""

import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView

P = ParamSpec("P")
R = TypeVar("R")


def _release_connection() -> None:
    """Give this thread's database connections back (to the pool, when there is one)
    instead of holding them while the request waits. Inside a transaction (a test's)
    they stay."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


async def database_call(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run synchronous database work in the request's thread, then release the
    connection: a waiting request holds neither a worker nor a connection."""

    def call() -> R:
        try:
            return function(*args, **kwargs)
        finally:
            _release_connection()

    return await sync_to_async(call)()


class AsyncApiView(APIView):
    """An APIView whose handlers are coroutines (a Django async view under the ASGI
    server). Authentication, permissions and throttles run in a thread as for any view;
    the handler awaits, so a request that waits holds no thread of the server."""

    async def dispatch(  # type: ignore[override]
        self, request: Any, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            await database_call(self.initial, request, *args, **kwargs)
            method = (request.method or "").lower()
            handler = (
                getattr(self, method, self.http_method_not_allowed)
                if method in self.http_method_names
                else self.http_method_not_allowed
            )
            response = handler(request, *args, **kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:
            response = await database_call(self.handle_exception, exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response


__all__ = ["AsyncApiView", "Request", "database_call"]
