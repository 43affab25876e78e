"""What every log line says about where it comes from: the request id, the user, the
order, the Celery task and the outbox message being handled.

Values live in context variables, so they follow a request or a task (threads and
asyncio tasks each see their own) and `ContextFilter` copies them onto every record.
The request id also travels: into the outbox rows a request writes, from there into the
worker that handles them, and into the audit rows that worker writes. With tracing on
(core.tracing), each line inside a span also gets its `trace_id` and `span_id`, so a log
line leads to its trace and a trace to its lines.
"""

import contextlib
import contextvars
import logging
from collections.abc import Iterator

from core import tracing

FIELDS = ("request_id", "user", "order_id", "task_id", "outbox_message_id")
_vars: dict[str, contextvars.ContextVar[str]] = {
    name: contextvars.ContextVar(f"oms_log_{name}", default="") for name in FIELDS
}


def bind(**values: object) -> None:
    """Set context fields for the rest of the current request, task or thread."""
    for name, value in values.items():
        _vars[name].set("" if value is None else str(value))


@contextlib.contextmanager
def bound(**values: object) -> Iterator[None]:
    """Set context fields for the `with` block only."""
    tokens = [(_vars[name], _vars[name].set(str(value or ""))) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current(name: str) -> str:
    return _vars[name].get()


REQUEST_ID_HEADER = "X-Request-ID"


def request_id_header() -> dict[str, str]:
    """The header that carries the current request id to an outside system, if any."""
    request_id = _vars["request_id"].get()
    return {REQUEST_ID_HEADER: request_id} if request_id else {}


class ContextFilter(logging.Filter):
    """Copy the context fields onto each record (empty when unknown), and the current
    trace and span ids when tracing is on (the JSON formatter writes every extra field)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _vars.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        ids = tracing.log_ids()
        if ids is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = ids
        return True
