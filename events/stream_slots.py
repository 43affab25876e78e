"""How many live event streams each user has open, bounded by
ORDER_EVENT_STREAMS_PER_USER across every server process.

Each open stream holds a slot: a member of a Redis sorted set per user scored by when
the slot lapses. A stream refreshes its slot with every heartbeat and gives it back when
it ends; a slot of a process that died lapses after a few missed heartbeats, so a crash
cannot lock a user out for long. Taking a slot is one Lua script (prune, count, add), so
concurrent opens cannot pass the bound together. Without EVENT_STREAM_REDIS_URL each
process counts its own; when Redis cannot be reached a stream is let through (logged),
as the rate limits do.
"""

import asyncio
import logging
import time
import uuid
import weakref

import redis.asyncio as aioredis
from django.conf import settings

logger = logging.getLogger(__name__)

_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Process memory when there is no Redis: user id -> {slot id: lapses at}.
_local: dict[str, dict[str, float]] = {}
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = (
    weakref.WeakKeyDictionary()
)


def _lifetime() -> int:
    """Seconds a slot lives without a refresh: three missed heartbeats."""
    return 3 * settings.ORDER_EVENT_STREAM_HEARTBEAT_SECONDS


def _key(user_id: str) -> str:
    return f"oms:event-streams:{user_id}"


def _client() -> aioredis.Redis | None:
    if not settings.EVENT_STREAM_REDIS_URL:
        return None
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = aioredis.Redis.from_url(
            settings.EVENT_STREAM_REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5
        )
    return client


async def stream_slot_take(*, user_id: str) -> str | None:
    """A new slot's id, or None when the user has ORDER_EVENT_STREAMS_PER_USER open."""
    slot = uuid.uuid4().hex
    now = time.time()
    limit = settings.ORDER_EVENT_STREAMS_PER_USER
    client = _client()
    if client is None:
        slots = _local.setdefault(user_id, {})
        for stale in [s for s, lapses in slots.items() if lapses <= now]:
            del slots[stale]
        if len(slots) >= limit:
            return None
        slots[slot] = now + _lifetime()
        return slot
    try:
        taken = await client.eval(
            _TAKE, 1, _key(user_id), now, now + _lifetime(), limit, slot, _lifetime()
        )
    except aioredis.RedisError:
        logger.warning("Stream slots unavailable; stream not counted", exc_info=True)
        return slot
    return slot if taken else None


async def stream_slot_refresh(*, user_id: str, slot: str) -> None:
    lapses = time.time() + _lifetime()
    client = _client()
    if client is None:
        if slot in _local.get(user_id, {}):
            _local[user_id][slot] = lapses
        return
    try:
        await client.zadd(_key(user_id), {slot: lapses}, xx=True)
        await client.expire(_key(user_id), _lifetime())
    except aioredis.RedisError:
        logger.warning("Stream slot not refreshed", exc_info=True)


async def stream_slot_release(*, user_id: str, slot: str) -> None:
    client = _client()
    if client is None:
        _local.get(user_id, {}).pop(slot, None)
        return
    try:
        await client.zrem(_key(user_id), slot)
    except aioredis.RedisError:
        logger.warning("Stream slot not released; it lapses by itself", exc_info=True)
