import uuid
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from core.idempotency import IdempotencyContext
from orders.api.actions import IDEMPOTENCY_KEY_PARAMETER, OrderActionApi
from orders.api.serializers import OrderOutputSerializer
from payments import services
from payments.api.serializers import (
    OrderPayInputSerializer,
    OrderRefundInputSerializer,
    WebhookAckSerializer,
)
from payments.webhooks import stripe_event_receive


@extend_schema_view(
    post=extend_schema(
        request=OrderPayInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: OrderOutputSerializer},
    )
)
class OrderPayApi(OrderActionApi):
    """Customer: pay (again) for an order in pending_payment or payment_failed."""

    input_serializer_class = OrderPayInputSerializer

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        services.payment_authorize(
            order_id=order_id, payment_method=data["payment_method"], actor=actor
        )


@extend_schema_view(
    post=extend_schema(
        request=None, parameters=[IDEMPOTENCY_KEY_PARAMETER], responses={200: OrderOutputSerializer}
    )
)
class OrderShipApi(OrderActionApi):
    """Staff: capture the authorized payment and ship the order."""

    permission_classes = [IsAdminUser]

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        services.order_ship(order_id=order_id, actor=actor)


@extend_schema_view(
    post=extend_schema(
        request=OrderRefundInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: OrderOutputSerializer},
    )
)
class OrderRefundApi(OrderActionApi):
    """Staff: refund all or part of what was captured."""

    permission_classes = [IsAdminUser]
    input_serializer_class = OrderRefundInputSerializer

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        # A retry after an unknown outcome re-sends the same refund operation.
        services.order_refund(
            order_id=order_id,
            amount=data.get("amount"),
            actor=actor,
            resume_operation_id=int(context.resource_id) if context.resource_id else None,
            on_prepared=lambda operation: context.checkpoint(str(operation.pk)),
        )


class StripeWebhookApi(APIView):
    """Stripe events: signature-checked, stored once by id, applied through the services."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(request=None, responses={200: WebhookAckSerializer})
    def post(self, request: Request) -> Response:
        created = stripe_event_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature")
        )
        return Response({"received": True, "duplicate": not created})
