"""Health checks for load balancers and orchestrators, cheap enough to poll every second.

- `/health/live`: the process answers (no dependency is asked).
- `/health/ready` (and `/health/`): the database answers, the broker accepts a
  connection and the outbox backlog is under HEALTH_OUTBOX_BACKLOG_MAX; the circuit
  breakers are reported (an open breaker degrades checkout, it does not make the
  service unready).
"""

from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.breakers import circuit_breaker_states
from core.models import OutboxMessage
from payments.provider import payment_breaker_state

OK, UNAVAILABLE = "ok", "unavailable"


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any failure means not ready
        return UNAVAILABLE
    return OK


def _broker() -> str:
    try:
        with current_app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=settings.HEALTH_BROKER_TIMEOUT_SECONDS)
    except Exception:  # refused, timed out, bad URL: not ready
        return UNAVAILABLE
    return OK


def _outbox_backlog() -> dict[str, Any]:
    """Messages still to hand to a worker, and how long the oldest has waited."""
    pending = OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING)
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    count = pending[: settings.HEALTH_OUTBOX_BACKLOG_MAX + 1].count()
    return {
        "pending": count,
        "oldest_pending_seconds": int((timezone.now() - oldest).total_seconds()) if oldest else 0,
    }


class HealthLiveApi(APIView):
    """Liveness: the process answers."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses=inline_serializer("Liveness", fields={"status": serializers.CharField()})
    )
    def get(self, request: Request) -> Response:
        return Response({"status": OK})


class HealthApi(APIView):
    """Readiness: the database and the broker answer and the outbox keeps up."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            (200, "application/json"): inline_serializer(
                "Health",
                fields={
                    "status": serializers.CharField(),
                    "database": serializers.CharField(),
                    "broker": serializers.CharField(),
                    "outbox": serializers.DictField(),
                    "payment_provider_breaker": serializers.CharField(),
                    "breakers": serializers.DictField(child=serializers.CharField()),
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        database = _database()
        outbox = _outbox_backlog() if database == OK else {}
        broker = _broker()
        ready = (
            database == OK
            and broker == OK
            and outbox.get("pending", 0) <= settings.HEALTH_OUTBOX_BACKLOG_MAX
        )
        return Response(
            {
                "status": OK if ready else UNAVAILABLE,
                "database": database,
                "broker": broker,
                "outbox": outbox,
                "payment_provider_breaker": payment_breaker_state(),
                "breakers": circuit_breaker_states(),
            },
            status=200 if ready else 503,
        )
