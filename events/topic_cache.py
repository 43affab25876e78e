"""This process's cache of the topics some active subscription wants.

Apart from the selectors so that a subscription saved here can clear it without
events.models importing the selectors (which import the models)."""

import threading
import time

_lock = threading.Lock()
_cached_at = 0.0
_cached_topics: frozenset[str] | None = None


def cached_topics(max_age_seconds: float) -> frozenset[str] | None:
    """The cached topics, or None when there are none younger than `max_age_seconds`."""
    with _lock:
        if _cached_topics is not None and time.monotonic() - _cached_at < max_age_seconds:
            return _cached_topics
    return None


def cache_topics(topics: frozenset[str], *, read_at: float) -> None:
    global _cached_at, _cached_topics
    with _lock:
        _cached_at, _cached_topics = read_at, topics


def topics_with_subscribers_forget() -> None:
    """Drop this process's cache (a subscription changed here)."""
    global _cached_topics
    with _lock:
        _cached_topics = None
