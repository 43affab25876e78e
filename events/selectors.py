import threading
import time

from django.conf import settings

from events.models import ALL_TOPICS, ORDER_TOPICS, EventSubscription

_lock = threading.Lock()
_cached_at = 0.0
_cached_topics: frozenset[str] | None = None


def topics_with_subscribers() -> frozenset[str]:
    """Topics some active subscription wants. Asked on every order status change, so it
    is cached per process for EVENTS_SUBSCRIPTION_CACHE_SECONDS."""
    global _cached_at, _cached_topics
    now = time.monotonic()
    with _lock:
        fresh = now - _cached_at < settings.EVENTS_SUBSCRIPTION_CACHE_SECONDS
        if _cached_topics is not None and fresh:
            return _cached_topics
    topics: set[str] = set()
    for wanted in EventSubscription.objects.filter(is_active=True).values_list("topics", flat=True):
        topics |= set(ORDER_TOPICS) if ALL_TOPICS in wanted else set(wanted)
    with _lock:
        _cached_at, _cached_topics = now, frozenset(topics)
    return frozenset(topics)


def topics_with_subscribers_forget() -> None:
    """Drop this process's cache (a subscription changed here)."""
    global _cached_topics
    with _lock:
        _cached_topics = None
