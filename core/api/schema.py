"""OpenAPI: every operation documents its error responses as problem+json."""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from core.api.exceptions import PROBLEM_CONTENT_TYPE


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    detail = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, with a stable machine `code`."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Stable error code, e.g. insufficient_stock.")
    errors = FieldErrorSerializer(  # type: ignore[assignment]  # a field named like the property
        many=True, required=False, help_text="Validation errors."
    )


class ProblemAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction == "response" and "default" not in responses:
            component = self.resolve_serializer(ProblemSerializer, "response")
            responses["default"] = {
                "description": "An error, as application/problem+json with a stable `code`.",
                "content": {PROBLEM_CONTENT_TYPE: {"schema": component.ref}},
            }
        return responses
