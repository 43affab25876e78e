"""Which database a request reads from: the primary (`default`) or the streaming
replica (`replica`, present when DATABASE_REPLICA_URL is set).

A request reads from the replica only when all of these hold:

- its view says its reads tolerate lag (`ReplicaReadsMixin` on an API view; every
  `GET` of the admin) and the method is GET or HEAD;
- it has written nothing so far (the router sees every write: once one happens, every
  later read of the request stays on the primary) and no transaction is open on the
  primary;
- the replica lags at most DATABASE_REPLICA_MAX_LAG_SECONDS behind (bounded staleness
  for everybody: past the bound every read goes to the primary);
- the acting user wrote nothing the replica has not replayed yet (read-your-writes).

Read-your-writes: after a request by a user that wrote, the primary's WAL position
(`pg_current_wal_lsn()`) is kept in the shared cache under the user's id for twice the
lag bound. A later read by that user goes to the replica only once the replica's replay
position (`pg_last_wal_replay_lsn()`) has passed it. A position, not a time: exact
whatever the lag, and no clocks are compared. Past its lifetime the mark is no longer
needed: the replica is only used while it lags less than the bound, so it has replayed
anything committed longer ago than that. The cache must be shared by every web process
(CACHE_REDIS_URL), or a user's next request may land in a process that never saw the mark.

Authentication, sessions and API keys are always read on the primary: a revoked key or a
fresh session must not depend on the replica.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest, HttpResponseBase

from core.actors import Actor

logger = logging.getLogger(__name__)

PRIMARY = DEFAULT_DB_ALIAS
REPLICA = "replica"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Read on the primary whatever the view: who is calling, and whether they may.
PRIMARY_ONLY_APPS = frozenset({"auth", "sessions", "access", "authtoken"})
_WRITE_MARK_KEY = "replica:last-write-lsn:{user_id}"


@dataclass
class ReadRoute:
    """How the current request reads. Shared by reference with the threads an async
    view runs its database work in, so what one sets the others see."""

    replica: bool = False
    wrote: bool = False


_route: ContextVar[ReadRoute | None] = ContextVar("oms_read_route", default=None)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def read_alias(app_label: str) -> str:
    """The alias a read of this app's table goes to now."""
    route = _route.get()
    if route is None or not route.replica or route.wrote or app_label in PRIMARY_ONLY_APPS:
        return PRIMARY
    if connections[PRIMARY].in_atomic_block:
        return PRIMARY
    return REPLICA


def note_write(app_label: str) -> None:
    """A write is about to happen: the rest of the request reads on the primary. Writes
    to tables always read on the primary (a key's last use, a session) do not count."""
    route = _route.get()
    if route is not None and app_label not in PRIMARY_ONLY_APPS:
        route.wrote = True


def lsn_value(lsn: str) -> int:
    """A PostgreSQL LSN ('16/B374D848') as a number that orders like the position."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class ReplicaStatus:
    replay_lsn: int
    # None: unknown (nothing replayed since the replica started while it is behind).
    lag_seconds: float | None


_status_lock = threading.Lock()
_status_cache: tuple[float, ReplicaStatus | None] = (0.0, None)

_STATUS_SQL = """
    SELECT pg_last_wal_replay_lsn()::text,
           CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
           END
"""


# An unreachable replica is asked again only after this long: a request should not wait
# for its connect timeout every DATABASE_REPLICA_STATUS_SECONDS.
_UNREACHABLE_RETRY_SECONDS = 5.0


def replica_status() -> ReplicaStatus | None:
    """The replica's replay position and lag, read at most once per
    DATABASE_REPLICA_STATUS_SECONDS per process; None when it cannot be reached."""
    global _status_cache
    with _status_lock:
        read_at, status = _status_cache
    max_age = settings.DATABASE_REPLICA_STATUS_SECONDS
    if status is None and read_at:
        max_age = max(max_age, _UNREACHABLE_RETRY_SECONDS)
    if max_age > 0 and time.monotonic() - read_at < max_age:
        return status
    # Not under the lock: threads that find the status stale at once may each read it.
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(_STATUS_SQL)
            lsn, lag = cursor.fetchone()
        status = ReplicaStatus(
            replay_lsn=lsn_value(lsn), lag_seconds=None if lag is None else float(lag)
        )
    except DatabaseError:
        logger.warning("replica status unreadable; reads stay on the primary", exc_info=True)
        status = None
    with _status_lock:
        _status_cache = (time.monotonic(), status)
    return status


def _write_mark_key(user_id: Any) -> str:
    return _WRITE_MARK_KEY.format(user_id=user_id)


def route_reads_to_replica(request: HttpRequest) -> bool:
    """Let the rest of this request read from the replica when that is safe (see the
    module's docstring). Call once the request is authenticated. Return the decision."""
    route = _route.get()
    if route is None or route.wrote or not replica_configured():
        return False
    if request.method not in SAFE_METHODS:
        return False
    status = replica_status()
    if status is None or status.lag_seconds is None:
        return False
    if status.lag_seconds > settings.DATABASE_REPLICA_MAX_LAG_SECONDS:
        return False
    user = Actor.from_request(request).user
    if user is not None:
        written = cache.get(_write_mark_key(user.pk))
        if written is not None and status.replay_lsn < written:
            return False
    route.replica = True
    return True


def _mark_write(request: HttpRequest, route: ReadRoute) -> None:
    """After a request that wrote: remember the primary's WAL position for its user."""
    if not replica_configured():
        return
    if not route.wrote and request.method in SAFE_METHODS:
        return
    user = Actor.from_request(request).user
    if user is None:
        return
    try:
        with connections[PRIMARY].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            (lsn,) = cursor.fetchone()
    except DatabaseError:
        # The answer is made; without a mark the user's reads follow the lag bound.
        logger.warning("primary WAL position unreadable after a write", exc_info=True)
        return
    cache.set(
        _write_mark_key(user.pk),
        lsn_value(lsn),
        timeout=2 * settings.DATABASE_REPLICA_MAX_LAG_SECONDS,
    )


class ReadRoutingMiddleware:
    """Give each request its ReadRoute; route the admin's GETs to the replica when
    safe; after a request that wrote, mark its user for read-your-writes."""

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        route = ReadRoute()
        token = _route.set(route)
        try:
            response = self.get_response(request)
        finally:
            _route.reset(token)
        _mark_write(request, route)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        route = ReadRoute()
        token = _route.set(route)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
        finally:
            _route.reset(token)
        await sync_to_async(_mark_write)(request, route)
        return response

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        match = request.resolver_match
        if match is not None and match.namespace == "admin":
            route_reads_to_replica(request)


class ReplicaReadsMixin:
    """For an API view whose GETs tolerate replica lag: once the request is
    authenticated and allowed, its reads may go to the replica."""

    def reads_tolerate_lag(self, request: Any) -> bool:
        return True

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if self.reads_tolerate_lag(request):
            route_reads_to_replica(request)
