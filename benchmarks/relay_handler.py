"""The outbox handler `python -m benchmarks.relay` measures: one small write per message.

Imported once Django is set up: by the publishing process, and by each worker
(`celery -A config worker --include benchmarks.relay_handler`).
"""

from typing import Any

from django.db import connection

from core.outbox import outbox_handler

TOPIC = "bench.relay"
HANDLER = "bench.relay_record"
QUEUE = "events"
TABLE = "bench_relay_handled"


@outbox_handler(TOPIC, name=HANDLER, queue=QUEUE)
def relay_record(payload: dict[str, Any]) -> None:
    """Record the message's key once (a repeat changes nothing, as handlers must)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (key, handled_at) VALUES (%s, now()) "  # noqa: S608 - a constant
            "ON CONFLICT (key) DO NOTHING",
            [payload["key"]],
        )
