"""Count the statements (round trips) one call sends to PostgreSQL."""

from collections import Counter
from collections.abc import Callable
from typing import Any

from benchmarks.db_clock import DbClock


def statement_kind(sql: str) -> str:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    if head in ("BEGIN", "COMMIT", "ROLLBACK"):
        return head
    if head in ("SAVEPOINT", "RELEASE"):
        return "SAVEPOINT"
    return "SQL"


def capture(run: Callable[[], Any]) -> tuple[list[str], dict[str, int]]:
    """Run once; return the statements captured and their count per kind.

    Django 5 logs BEGIN/COMMIT/ROLLBACK too, so every entry is one round trip to
    PostgreSQL; the connection health check (CONN_HEALTH_CHECKS, a raw "SELECT 1" at
    the first query of a request on a reused connection, sent by core.db.backend only
    when the socket check cannot rule out a dropped connection) is not logged and is
    counted separately.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    clock = DbClock()
    with clock.installed(), CaptureQueriesContext(connection) as captured:
        run()
    statements = [query["sql"] for query in captured.captured_queries]
    kinds = Counter(statement_kind(sql) for sql in statements)
    kinds["health check"] = clock.health_checks
    kinds["round trips"] = len(statements) + clock.health_checks
    return statements, dict(kinds)
