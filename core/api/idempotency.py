"""Glue between DRF views and core.idempotency."""

from collections.abc import Callable
from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from core.actors import Actor
from core.api.exceptions import PROBLEM_CONTENT_TYPE
from core.idempotency import (
    CompletedKey,
    IdempotencyContext,
    StatementClaim,
    idempotent_execute,
)

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def idempotent_response(
    request: Request,
    *,
    payload: Any,
    operation: Callable[[IdempotencyContext], tuple[int, Any]],
    atomic: bool = True,
    headers: dict[str, str] | None = None,
    written: Callable[[CompletedKey], Any | None] | None = None,
    claimed_by_statement: Callable[[StatementClaim], tuple[int, Any] | None] | None = None,
) -> Response:
    """Run the operation once per (user, Idempotency-Key); replay the stored response.
    `written`, `claimed_by_statement`: core.idempotency.idempotent_execute's
    single-statement forms of it."""
    result = idempotent_execute(
        user=Actor.from_request(request).require_user(),
        key=request.headers.get(IDEMPOTENCY_KEY_HEADER),
        method=request.method or "POST",
        path=request.path,
        payload=payload,
        operation=operation,
        atomic=atomic,
        written=written,
        claimed_by_statement=claimed_by_statement,
    )
    response_headers = dict(headers or {})
    if result.replayed:
        response_headers[REPLAYED_HEADER] = "true"
    content_type = PROBLEM_CONTENT_TYPE if result.status >= 400 else None
    return Response(
        result.body, status=result.status, headers=response_headers, content_type=content_type
    )
