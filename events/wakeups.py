"""Wake-ups for requests that wait on the order event log (long polls and streams).

One listener per process (per event loop): an asyncio task holding one PostgreSQL
connection that LISTENs on orders.audit.ORDER_EVENTS_CHANNEL, where every event's
transaction NOTIFYs at commit. Waiting requests register here and are woken when an
event of their order (or any event, for feed readers) commits. A wake-up only says
"read the log again": the readers never take anything from the notification, so a
notification lost (the listener reconnecting, a busy server) delays, never loses, an
event, and the readers also read again every ORDER_EVENT_POLL_SECONDS.
"""

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterator
from typing import Any

import psycopg
from django.conf import settings

from orders.audit import ORDER_EVENTS_CHANNEL

logger = logging.getLogger(__name__)

# The key feed readers wait under: woken by every order's events.
ANY_ORDER = ""
_RECONNECT_SECONDS = (0.5, 1, 2, 5)


class EventListener:
    """The process's LISTEN connection and the requests waiting on it."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, order_id: str = ANY_ORDER) -> Iterator[asyncio.Event]:
        """An asyncio.Event set when an event of the order (any order: ANY_ORDER)
        commits, until the block ends. Clear it before each read of the log."""
        woken = asyncio.Event()
        self._waiters.setdefault(order_id, set()).add(woken)
        self._ensure_running()
        try:
            yield woken
        finally:
            waiting = self._waiters.get(order_id)
            if waiting is not None:
                waiting.discard(woken)
                if not waiting:
                    del self._waiters[order_id]

    @property
    def waiting(self) -> int:
        return sum(len(waiting) for waiting in self._waiters.values())

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name="order-event-listener"
            )

    def _wake(self, order_id: str) -> None:
        for key in (ANY_ORDER, order_id):
            for woken in self._waiters.get(key, ()):
                woken.set()

    def _wake_all(self) -> None:
        for waiting in self._waiters.values():
            for woken in waiting:
                woken.set()

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    **_connection_params(), autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {ORDER_EVENTS_CHANNEL}")
                    failures = 0
                    self.listening.set()
                    # Events may have committed while nobody listened: everyone reads.
                    self._wake_all()
                    async for notify in connection.notifies():
                        self._wake(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Order event listener lost its connection", exc_info=True)
            self.listening.clear()
            await asyncio.sleep(_RECONNECT_SECONDS[min(failures, len(_RECONNECT_SECONDS) - 1)])
            failures += 1


def _connection_params() -> dict[str, Any]:
    # LISTEN holds a session: never through a pooler in transaction mode.
    database = settings.DATABASE_DIRECT or settings.DATABASES["default"]
    params = {
        "dbname": database["NAME"],
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
        "host": database.get("HOST") or None,
        "port": database.get("PORT") or None,
        "application_name": "oms-event-listener",
    }
    return {name: value for name, value in params.items() if value is not None}


_listeners: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventListener]" = (
    weakref.WeakKeyDictionary()
)


def event_listener() -> EventListener:
    """The listener of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    listener = _listeners.get(loop)
    if listener is None:
        listener = _listeners[loop] = EventListener()
    return listener


async def wait_for_wakeup(woken: asyncio.Event, timeout: float) -> None:
    """Wait until `woken` is set or `timeout` seconds (at most the poll interval) pass."""
    timeout = max(0.0, min(timeout, float(settings.ORDER_EVENT_POLL_SECONDS)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(woken.wait(), timeout)
