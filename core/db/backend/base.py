"""Django's PostgreSQL backend whose health check asks the socket before the server.

Django's check of a reused connection (CONN_HEALTH_CHECKS) is a `SELECT 1` at the first
query of every request; with the pool, an empty query at every checkout. Either is a
round trip per request. A server that dropped the connection (pg_terminate_backend, a
restart, an idle timeout, a PgBouncer that went away) has sent an error and an EOF by
then, which leaves the client's socket readable. So the check here first looks, without
a round trip, whether psycopg holds the connection open and idle and whether its socket
has nothing unread (as urllib3 decides whether a pooled connection was dropped); only a
readable socket (also a NOTICE, or a NOTIFY on a LISTEN connection) or a doubtful state
costs the real check.
"""

import select
from collections.abc import Callable
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as postgresql
from psycopg.pq import ConnStatus, TransactionStatus

_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def connection_is_idle_and_unread(connection: psycopg.Connection[Any]) -> bool:
    """Whether the connection is open, idle outside a transaction, with nothing unread.

    No round trip: a poll of the socket with a timeout of 0. False means "ask the
    server", not "broken".
    """
    if connection.closed or connection.broken:
        return False
    info = connection.info
    if info.status != ConnStatus.OK or info.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        socket = connection.pgconn.socket
    except psycopg.OperationalError:  # no socket: the connection is bad
        return False
    poller = select.poll()
    poller.register(socket, _READABLE)
    return not poller.poll(0)


def pool_check(connection: psycopg.Connection[Any]) -> None:
    """The pool's check at every checkout: raise if the connection does not work."""
    if not connection_is_idle_and_unread(connection):
        from psycopg_pool import ConnectionPool

        ConnectionPool.check_connection(connection)


class DatabaseWrapper(postgresql.DatabaseWrapper):
    # Django's, untyped in django-stubs: the pools of every alias, and the per-connection
    # setup the pool runs on each new connection.
    _connection_pools: dict[str, Any]
    _configure_connection: Callable[[psycopg.Connection[Any]], None]

    def is_usable(self) -> bool:
        if self.connection is None:
            return False
        if connection_is_idle_and_unread(self.connection):
            return True
        return self.is_usable_by_round_trip()

    def is_usable_by_round_trip(self) -> bool:
        """Django's check: a `SELECT 1` on the connection."""
        return bool(super().is_usable())

    @property
    def pool(self) -> Any:
        """Django's pool, its checkout check (CONN_HEALTH_CHECKS) done by `pool_check`."""
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None
        if self.alias not in self._connection_pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            from psycopg_pool import ConnectionPool

            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,
                check=pool_check if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
                **({} if pool_options is True else pool_options),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]
