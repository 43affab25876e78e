"""Read the order event log: the feed of every order's events for internal services,
and one order's events for its owner; each as a page (that may wait for the next
event: `wait=`) or as a live stream (text/event-stream).

The handlers are coroutines: a request that waits holds no server thread and no
database connection, only a registration with the process's event listener
(events.wakeups). What it returns is always read from the log itself.
"""

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.actors import Actor
from core.api.renderers import JSONRenderer
from core.api.views import AsyncApiView, database_call
from core.read_routing import ReplicaReadsMixin
from events.api.serializers import (
    EventFeedOutputSerializer,
    EventFeedQuerySerializer,
    EventFeedStreamQuerySerializer,
    LastEventIdSerializer,
    OrderEventOutputSerializer,
    OrderEventsOutputSerializer,
    OrderEventsQuerySerializer,
    OrderEventStreamQuerySerializer,
)
from events.errors import TooManyStreams
from events.stream_slots import stream_slot_refresh, stream_slot_release, stream_slot_take
from events.wakeups import ANY_ORDER, event_listener, wait_for_wakeup
from orders.models import Order, OrderEvent
from orders.selectors import FeedCursor, order_events_feed, order_events_of, order_get_for

# Events a stream reads from the log at a time.
_STREAM_BATCH = 100

LAST_EVENT_ID = OpenApiParameter(
    "Last-Event-ID",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="resume after this event (sent by an EventSource when it reconnects)",
)
EVENT_STREAM_RESPONSE = {
    (200, "text/event-stream"): OpenApiTypes.STR,
}


async def _read_until(
    read: Callable[[], Awaitable[list[OrderEvent]]], *, wake_key: str, wait: int
) -> list[OrderEvent]:
    """Read; with nothing there, read again at each wake-up (and each poll interval)
    until something is there or `wait` seconds passed."""
    wait = min(wait, settings.ORDER_EVENT_WAIT_MAX_SECONDS)
    if wait <= 0:
        return await read()
    deadline = time.monotonic() + wait
    # Registered before the first read: an event committing in between still wakes it.
    with event_listener().subscribe(wake_key) as woken:
        while True:
            woken.clear()
            events = await read()
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                return events
            await wait_for_wakeup(woken, remaining)


def _reads_without_waiting(request: Request) -> bool:
    """A page that does not wait may come from the replica; one that waits is woken by
    the primary's NOTIFY and reads the primary, which has what woke it."""
    return request.query_params.get("wait", "0") in ("", "0")


class EventFeedApi(ReplicaReadsMixin, AsyncApiView):
    """Staff and internal services: every order's events in commit order, from a cursor."""

    def reads_tolerate_lag(self, request: Request) -> bool:
        return _reads_without_waiting(request)

    @extend_schema(parameters=[EventFeedQuerySerializer], responses=EventFeedOutputSerializer)
    async def get(self, request: Request) -> Response:
        query = EventFeedQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after: FeedCursor | None = query.validated_data.get("after")
        events = await _read_until(
            lambda: database_call(
                order_events_feed,
                after=after,
                types=query.validated_data.get("types"),
                limit=query.validated_data["limit"],
            ),
            wake_key=ANY_ORDER,
            wait=query.validated_data["wait"],
        )
        next_cursor = FeedCursor.of(events[-1]) if events else after
        return Response(
            {
                "events": OrderEventOutputSerializer(events, many=True).data,
                "next_cursor": str(next_cursor) if next_cursor else None,
            }
        )


class OrderEventsApi(ReplicaReadsMixin, AsyncApiView):
    """The order's owner and staff: the order's events by sequence."""

    def reads_tolerate_lag(self, request: Request) -> bool:
        return _reads_without_waiting(request)

    @extend_schema(parameters=[OrderEventsQuerySerializer], responses=OrderEventsOutputSerializer)
    async def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = await database_call(
            order_get_for, actor=Actor.from_request(request), order_id=order_id
        )
        query = OrderEventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        events = await _read_until(
            lambda: database_call(
                order_events_of,
                order=order,
                after_sequence=query.validated_data["after_sequence"],
                limit=query.validated_data["limit"],
            ),
            wake_key=str(order.pk),
            wait=query.validated_data["wait"],
        )
        return Response({"events": OrderEventOutputSerializer(events, many=True).data})


def _last_event_id(request: Request, field: str) -> Any:
    """The Last-Event-ID header as a cursor or a sequence; None without one."""
    header = request.headers.get("Last-Event-ID", "").strip()
    if not header:
        return None
    parsed = LastEventIdSerializer(data={field: header[:40]})
    if not parsed.is_valid():
        raise ValidationError({"Last-Event-ID": parsed.errors[field]})
    return parsed.validated_data[field]


def _sse(event: OrderEvent, event_id: str) -> bytes:
    data = JSONRenderer().render(OrderEventOutputSerializer(event).data)
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), event.type.encode(), data)


async def _stream(
    *,
    read: Callable[[Any], Awaitable[list[OrderEvent]]],
    position: Any,
    event_id: Callable[[OrderEvent], Any],
    wake_key: str,
    user_id: str,
    slot: str,
) -> AsyncIterator[bytes]:
    """Every event after `position` as it commits, a heartbeat comment when quiet; the
    user's stream slot goes back when the client leaves."""
    heartbeat = settings.ORDER_EVENT_STREAM_HEARTBEAT_SECONDS
    try:
        with event_listener().subscribe(wake_key) as woken:
            # Opens the response at once (headers and a first byte) and tells an
            # EventSource to reconnect after 2 s.
            yield b"retry: 2000\n\n"
            next_heartbeat = time.monotonic() + heartbeat
            while True:
                woken.clear()
                events = await read(position)
                for event in events:
                    position = event_id(event)
                    yield _sse(event, str(position))
                if len(events) == _STREAM_BATCH:
                    continue
                now = time.monotonic()
                if now >= next_heartbeat:
                    yield b": heartbeat\n\n"
                    await stream_slot_refresh(user_id=user_id, slot=slot)
                    next_heartbeat = now + heartbeat
                await wait_for_wakeup(woken, next_heartbeat - now)
    finally:
        await stream_slot_release(user_id=user_id, slot=slot)


async def _stream_response(request: Request, **stream: Any) -> StreamingHttpResponse:
    user_id = str(request.user.pk)
    slot = await stream_slot_take(user_id=user_id)
    if slot is None:
        raise TooManyStreams(
            f"At most {settings.ORDER_EVENT_STREAMS_PER_USER} event streams may be open "
            "at once; close one first."
        )
    response = StreamingHttpResponse(
        _stream(user_id=user_id, slot=slot, **stream), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    # Tell a buffering proxy (nginx) to pass each event on at once.
    response["X-Accel-Buffering"] = "no"
    return response


class _StreamApiView(AsyncApiView):
    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # The stream is text/event-stream whatever the client accepts; refusals are
        # problem+json.
        renderer = JSONRenderer()
        return renderer, renderer.media_type


class EventFeedStreamApi(_StreamApiView):
    """Staff and internal services: every order's events as they commit, as
    server-sent events whose id is the event's feed cursor."""

    @extend_schema(
        parameters=[EventFeedStreamQuerySerializer, LAST_EVENT_ID],
        responses=EVENT_STREAM_RESPONSE,
    )
    async def get(self, request: Request) -> StreamingHttpResponse:
        query = EventFeedStreamQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = _last_event_id(request, "cursor") or query.validated_data.get("after")
        types = query.validated_data.get("types")

        async def read(position: FeedCursor | None) -> list[OrderEvent]:
            return await database_call(
                order_events_feed, after=position, types=types, limit=_STREAM_BATCH
            )

        return await _stream_response(
            request, read=read, position=after, event_id=FeedCursor.of, wake_key=ANY_ORDER
        )


class OrderEventStreamApi(_StreamApiView):
    """The order's owner and staff: the order's events as they commit, as server-sent
    events whose id is the event's sequence."""

    @extend_schema(
        parameters=[OrderEventStreamQuerySerializer, LAST_EVENT_ID],
        responses=EVENT_STREAM_RESPONSE,
    )
    async def get(self, request: Request, order_id: uuid.UUID) -> StreamingHttpResponse:
        order: Order = await database_call(
            order_get_for, actor=Actor.from_request(request), order_id=order_id
        )
        query = OrderEventStreamQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        last = _last_event_id(request, "sequence")
        after = last if last is not None else query.validated_data["after_sequence"]

        async def read(position: int) -> list[OrderEvent]:
            return await database_call(
                order_events_of, order=order, after_sequence=position, limit=_STREAM_BATCH
            )

        return await _stream_response(
            request,
            read=read,
            position=after,
            event_id=lambda event: event.sequence,
            wake_key=str(order.pk),
        )
