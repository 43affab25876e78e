"""Circuit breakers shared by every web and worker process.

State lives in Redis when BREAKER_REDIS_URL is set (one view across processes); in
process memory otherwise (the embedded default). If Redis itself is unreachable a
breaker reads as closed, so calls still go out, each bounded by its own timeouts.
"""

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pybreaker
import redis
from django.conf import settings

T = TypeVar("T")


class SharedCircuitBreaker(pybreaker.CircuitBreaker):
    """A pybreaker breaker that does not serialize the calls it guards.

    pybreaker 1.4 holds its lock for the whole call, so in a threaded server one slow
    provider call would block every other call in the process. Here the lock covers
    only reading and updating the state; the call itself runs outside it. (In
    half-open state a few concurrent probes may go out instead of exactly one.)
    """

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            state = self.state
            if isinstance(state, pybreaker.CircuitOpenState):
                # pybreaker's open state makes the trial call itself (inside the lock), and
                # the call below would then run it a second time: only switch to
                # half-open here, once the reset timeout passed.
                opened_at = self._state_storage.opened_at
                reset_timeout = timedelta(seconds=self.reset_timeout)
                if opened_at and datetime.now(UTC) < opened_at + reset_timeout:
                    raise pybreaker.CircuitBreakerError("circuit breaker still open")
                self.half_open()
                state = self.state
            state.before_call(func, *args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as error:
            with self._lock, contextlib.suppress(BaseException):
                # Counts the failure (and may open the breaker); re-raises on a trip.
                state._handle_error(error, reraise=False)
            raise
        with self._lock:
            state._handle_success()
        return result


_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_lock = threading.Lock()


def circuit_breaker(
    name: str,
    *,
    fail_max: int,
    reset_timeout: int,
    exclude: list[type[BaseException]] | None = None,
) -> pybreaker.CircuitBreaker:
    """The breaker called `name`, created on first use."""
    with _lock:
        breaker = _breakers.get(name)
        if breaker is None:
            storage: pybreaker.CircuitBreakerStorage
            if settings.BREAKER_REDIS_URL:
                client = redis.Redis.from_url(
                    settings.BREAKER_REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5
                )
                storage = pybreaker.CircuitRedisStorage(
                    pybreaker.STATE_CLOSED, client, namespace=f"oms-breaker-{name}"
                )
            else:
                storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
            breaker = SharedCircuitBreaker(
                fail_max=fail_max,
                reset_timeout=reset_timeout,
                exclude=exclude or [],
                state_storage=storage,
                throw_new_error_on_trip=False,
                name=name,
            )
            _breakers[name] = breaker
        return breaker


def circuit_breakers_reset() -> None:
    """Close and forget every breaker (settings changed, or a test starts afresh)."""
    with _lock:
        for breaker in _breakers.values():
            with contextlib.suppress(redis.RedisError):
                breaker.close()
        _breakers.clear()


def circuit_breaker_states() -> dict[str, str]:
    states: dict[str, str] = {}
    for name, breaker in list(_breakers.items()):
        try:
            states[name] = str(breaker.current_state)
        except redis.RedisError:
            states[name] = "unknown"
    return states
