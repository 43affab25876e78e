from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orders.models import OrderEvent
from orders.selectors import FeedCursor
from orders.states import EVENT_TYPES

# The most a long poll may ask to wait (the API's bound; the server may wait less:
# ORDER_EVENT_WAIT_MAX_SECONDS).
ORDER_EVENT_WAIT_LIMIT_SECONDS = 30


@extend_schema_field(OpenApiTypes.STR)
class CursorField(serializers.Field):
    def to_representation(self, value: Any) -> str:
        return str(value)

    def to_internal_value(self, data: Any) -> FeedCursor:
        cursor = FeedCursor.parse(str(data)[:40])
        if cursor is None:
            raise serializers.ValidationError(
                "Not a feed cursor: pass the next_cursor of an earlier page.", code="invalid"
            )
        return cursor


@extend_schema_field(OpenApiTypes.STR)
class EventTypesField(serializers.Field):
    def to_representation(self, value: Any) -> str:
        return ",".join(value)

    def to_internal_value(self, data: Any) -> list[str]:
        text = str(data)
        if len(text) > 1000:
            raise serializers.ValidationError("At most 1000 characters.", code="max_length")
        types = [t.strip() for t in text.split(",") if t.strip()]
        unknown = sorted(set(types) - set(EVENT_TYPES))
        if unknown:
            raise serializers.ValidationError(
                f"{len(unknown)} unknown event type(s); known: {', '.join(EVENT_TYPES)}.",
                code="invalid_choice",
            )
        return types


class ApiVersionField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        version = str(super().to_internal_value(data))
        if version != settings.ORDER_EVENTS_API_VERSION:
            raise serializers.ValidationError(
                f"Events are available in api_version {settings.ORDER_EVENTS_API_VERSION}.",
                code="invalid_choice",
            )
        return version


def wait_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=ORDER_EVENT_WAIT_LIMIT_SECONDS,
        default=0,
        help_text="long poll: with nothing to return, hold the answer up to this many "
        "seconds until an event commits",
    )


class EventFeedQuerySerializer(serializers.Serializer):
    after = CursorField(required=False, help_text="next_cursor of the page before")
    types = EventTypesField(
        required=False, help_text="comma-separated event types, e.g. order.shipped"
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=settings.ORDER_EVENT_FEED_MAX_LIMIT, default=100
    )
    wait = wait_field()
    api_version = ApiVersionField(required=False, max_length=32)


class OrderEventsQuerySerializer(serializers.Serializer):
    after_sequence = serializers.IntegerField(required=False, min_value=0, default=0)
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=settings.ORDER_EVENT_FEED_MAX_LIMIT, default=100
    )
    wait = wait_field()
    api_version = ApiVersionField(required=False, max_length=32)


class EventFeedStreamQuerySerializer(serializers.Serializer):
    after = CursorField(
        required=False, help_text="start after this cursor (a Last-Event-ID header wins)"
    )
    types = EventTypesField(
        required=False, help_text="comma-separated event types, e.g. order.shipped"
    )
    api_version = ApiVersionField(required=False, max_length=32)


class OrderEventStreamQuerySerializer(serializers.Serializer):
    after_sequence = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**63 - 1,
        default=0,
        help_text="start after this sequence (a Last-Event-ID header wins)",
    )
    api_version = ApiVersionField(required=False, max_length=32)


class LastEventIdSerializer(serializers.Serializer):
    """The Last-Event-ID header an EventSource sends when it reconnects."""

    cursor = CursorField(required=False)
    sequence = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)


class OrderEventOutputSerializer(serializers.ModelSerializer):
    cursor = serializers.SerializerMethodField()

    class Meta:
        model = OrderEvent
        fields = [
            "id",
            "type",
            "occurred_at",
            "order_id",
            "sequence",
            "api_version",
            "data",
            "cursor",
        ]

    def get_cursor(self, event: OrderEvent) -> str:
        """The feed position right after this event (`after=` resumes there)."""
        return str(FeedCursor.of(event))


class EventFeedOutputSerializer(serializers.Serializer):
    events = OrderEventOutputSerializer(many=True)
    # Pass as `after` to read on; the same cursor when there was nothing new.
    next_cursor = serializers.CharField(allow_null=True)


class OrderEventsOutputSerializer(serializers.Serializer):
    events = OrderEventOutputSerializer(many=True)
