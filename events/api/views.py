"""Read the order event log: the feed of every order's events for internal services,
and one order's events for its owner."""

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from events.api.serializers import (
    EventFeedOutputSerializer,
    EventFeedQuerySerializer,
    OrderEventOutputSerializer,
    OrderEventsOutputSerializer,
    OrderEventsQuerySerializer,
)
from orders.selectors import FeedCursor, order_events_feed, order_events_of, order_get_for


class EventFeedApi(APIView):
    """Staff and internal services: every order's events in commit order, from a cursor."""

    @extend_schema(parameters=[EventFeedQuerySerializer], responses=EventFeedOutputSerializer)
    def get(self, request: Request) -> Response:
        query = EventFeedQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after: FeedCursor | None = query.validated_data.get("after")
        events = order_events_feed(
            after=after,
            types=query.validated_data.get("types"),
            limit=query.validated_data["limit"],
        )
        next_cursor = FeedCursor.of(events[-1]) if events else after
        return Response(
            {
                "events": OrderEventOutputSerializer(events, many=True).data,
                "next_cursor": str(next_cursor) if next_cursor else None,
            }
        )


class OrderEventsApi(APIView):
    """The order's owner and staff: the order's events by sequence."""

    @extend_schema(parameters=[OrderEventsQuerySerializer], responses=OrderEventsOutputSerializer)
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = order_get_for(actor=Actor.from_request(request), order_id=order_id)
        query = OrderEventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        events = order_events_of(
            order=order,
            after_sequence=query.validated_data["after_sequence"],
            limit=query.validated_data["limit"],
        )
        return Response({"events": OrderEventOutputSerializer(events, many=True).data})
