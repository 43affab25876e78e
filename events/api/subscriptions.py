"""Staff: re-deliver events to a subscription, and enable a subscription again."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.fields import UtcDateTimeField
from events import services


class EventSubscriptionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    url = serializers.CharField()
    topics = serializers.ListField(child=serializers.CharField())
    is_active = serializers.BooleanField()
    disabled_at = serializers.DateTimeField(allow_null=True)
    disabled_reason = serializers.CharField()


class EventSubscriptionRedeliverApi(APIView):
    """Deliver one event, or every event of the subscription's topics since a time, to
    the subscription again (in each order's sequence, within seconds)."""

    class InputSerializer(serializers.Serializer):
        event_id = serializers.UUIDField(required=False, help_text="one event's id")
        since = UtcDateTimeField(
            required=False, help_text="every event that occurred at or after this time"
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if ("event_id" in attrs) == ("since" in attrs):
                raise serializers.ValidationError("Pass either event_id or since.", code="invalid")
            return attrs

    class OutputSerializer(serializers.Serializer):
        # Deliveries queued: the event's, or one per event since the time.
        queued = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses={202: OutputSerializer})
    def post(self, request: Request, subscription_id: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        queued = services.event_redeliver(
            subscription_id=subscription_id, **serializer.validated_data
        )
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)


class EventSubscriptionEnableApi(APIView):
    """Enable a subscription again after it was disabled for failing."""

    @extend_schema(request=None, responses=EventSubscriptionOutputSerializer)
    def post(self, request: Request, subscription_id: int) -> Response:
        subscription = services.event_subscription_enable(subscription_id=subscription_id)
        return Response(EventSubscriptionOutputSerializer(subscription).data)
