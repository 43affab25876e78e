import threading
import time

import pybreaker
import pytest

from core.breakers import SharedCircuitBreaker


def _breaker(fail_max: int = 2) -> SharedCircuitBreaker:
    return SharedCircuitBreaker(
        fail_max=fail_max,
        reset_timeout=60,
        state_storage=pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED),
        throw_new_error_on_trip=False,
    )


def test_slow_calls_through_one_breaker_run_concurrently():
    breaker = _breaker()
    finished: list[float] = []

    def slow() -> None:
        time.sleep(0.5)
        finished.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=breaker.call, args=(slow,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert len(finished) == 4
    assert max(finished) - started < 1.5  # serialized calls would take 2 s


def test_breaker_opens_after_fail_max_and_then_fails_fast_without_calling():
    breaker = _breaker(fail_max=2)
    calls = []

    def failing() -> None:
        calls.append(1)
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(failing)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(failing)

    assert breaker.current_state == pybreaker.STATE_OPEN
    assert len(calls) == 2


def test_a_success_resets_the_failure_count():
    breaker = _breaker(fail_max=2)

    def failing() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        breaker.call(failing)
    assert breaker.call(lambda: "ok") == "ok"
    with pytest.raises(ConnectionError):
        breaker.call(failing)

    assert breaker.current_state == pybreaker.STATE_CLOSED
