"""Time spent waiting on PostgreSQL inside this process."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class DbClock:
    """Time spent waiting on PostgreSQL: every cursor execute, commit and health check.

    The execute time includes psycopg's own work around the round trip, so "Python" time
    computed from it is app + Django + DRF time, a slight underestimate.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.statements = 0
        self.commits = 0
        self.commit_seconds = 0.0
        # Health checks that went to PostgreSQL (core.db.backend sends none while the
        # connection's socket has nothing unread).
        self.health_checks = 0

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start
            self.statements += 1

    @contextmanager
    def installed(self) -> Iterator["DbClock"]:
        from django.db import connection

        original_commit = getattr(connection, "_commit")  # noqa: B009 - private, untyped
        # core.db.backend's round trip, or the stock backend's check (always one).
        round_trip = "is_usable_by_round_trip"
        health_check = round_trip if hasattr(connection, round_trip) else "is_usable"
        original_is_usable = getattr(connection, health_check)

        def timed_commit() -> None:
            start = time.perf_counter()
            try:
                original_commit()
            finally:
                elapsed = time.perf_counter() - start
                self.seconds += elapsed
                self.commit_seconds += elapsed
                self.commits += 1

        def timed_is_usable() -> bool:
            start = time.perf_counter()
            try:
                return bool(original_is_usable())
            finally:
                self.seconds += time.perf_counter() - start
                self.health_checks += 1

        setattr(connection, "_commit", timed_commit)  # noqa: B010 - instance patch, undone below
        setattr(connection, health_check, timed_is_usable)
        try:
            with connection.execute_wrapper(self):
                yield self
        finally:
            delattr(connection, "_commit")
            delattr(connection, health_check)
