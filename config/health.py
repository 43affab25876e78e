from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from payments.provider import payment_breaker_state


class HealthApi(APIView):
    """Readiness: the database answers. Also reports the payment provider's breaker
    (an open breaker degrades checkout but does not make the service unready)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses=inline_serializer(
            "Health",
            fields={"status": serializers.CharField(), "database": serializers.CharField()},
        )
    )
    def get(self, request: Request) -> Response:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            database = "ok"
        except Exception:  # any failure means not ready
            database = "unavailable"
        ready = database == "ok"
        return Response(
            {
                "status": "ok" if ready else "unavailable",
                "database": database,
                "payment_provider_breaker": payment_breaker_state(),
            },
            status=200 if ready else 503,
        )
