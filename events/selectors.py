import time

from django.conf import settings

from events.models import ALL_TOPICS, TOPICS, EventSubscription
from events.topic_cache import cache_topics, cached_topics
from events.topic_cache import topics_with_subscribers_forget as topics_with_subscribers_forget


def topics_with_subscribers() -> frozenset[str]:
    """Event types some active subscription wants. Asked for every event, so it is
    cached per process for EVENTS_SUBSCRIPTION_CACHE_SECONDS."""
    cached = cached_topics(settings.EVENTS_SUBSCRIPTION_CACHE_SECONDS)
    if cached is not None:
        return cached
    read_at = time.monotonic()
    topics: set[str] = set()
    for wanted in EventSubscription.objects.filter(is_active=True).values_list("topics", flat=True):
        topics |= set(TOPICS) if ALL_TOPICS in wanted else set(wanted)
    cache_topics(frozenset(topics), read_at=read_at)
    return frozenset(topics)
