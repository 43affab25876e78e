"""A customer's email preferences, and the one-click unsubscribe link in emails."""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from notifications.errors import NotificationKindMandatory
from notifications.models import OPTIONAL_KINDS
from notifications.preferences import (
    ALL_KINDS,
    notification_preferences_of,
    notification_preferences_set,
    unsubscribe_apply,
)

PreferencesSerializer = inline_serializer(
    "NotificationPreferences",
    fields={kind: serializers.BooleanField(required=False) for kind in ALL_KINDS},
)


class PreferencesInputSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> dict[str, bool]:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Send a JSON object."]})
        errors: dict[str, list[str]] = {}
        changes: dict[str, bool] = {}
        for kind, value in data.items():
            if kind not in ALL_KINDS:
                errors[str(kind)[:64]] = ["Not a kind of email."]
            elif not isinstance(value, bool):
                errors[kind] = ["Must be true or false."]
            else:
                changes[kind] = value
        if errors:
            raise serializers.ValidationError(errors)
        return changes


class NotificationPreferencesApi(APIView):
    """The signed-in customer's order emails: which they get; optional ones can be
    switched off (shipped, delivered, refund notices)."""

    @extend_schema(responses=PreferencesSerializer)
    def get(self, request: Request) -> Response:
        user = Actor.from_request(request).require_user()
        return Response(notification_preferences_of(user=user))

    @extend_schema(request=PreferencesSerializer, responses=PreferencesSerializer)
    def patch(self, request: Request) -> Response:
        user = Actor.from_request(request).require_user()
        changes = PreferencesInputSerializer().to_internal_value(request.data)
        mandatory_off = sorted(k for k, on in changes.items() if not on and k not in OPTIONAL_KINDS)
        if mandatory_off:
            raise NotificationKindMandatory(
                f"These emails always go out: {', '.join(mandatory_off)}.", kinds=mandatory_off
            )
        optional = {k: on for k, on in changes.items() if k in OPTIONAL_KINDS}
        return Response(notification_preferences_set(user=user, changes=optional))


class UnsubscribeApi(APIView):
    """RFC 8058 one-click unsubscribe: the link in an email's List-Unsubscribe header.
    POSTing to it switches that kind of email off; again, it changes nothing."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("token", str, required=True)],
        responses=inline_serializer(
            "Unsubscribed", fields={"unsubscribed": serializers.CharField()}
        ),
    )
    def post(self, request: Request) -> Response:
        _user_id, kind = unsubscribe_apply(token=request.query_params.get("token", ""))
        return Response({"unsubscribed": kind})
