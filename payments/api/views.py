import uuid
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from core.api.idempotency import IDEMPOTENCY_KEY_HEADER, idempotent_response
from core.idempotency import IdempotencyContext, idempotency_key_validate
from orders import selectors as order_selectors
from orders.api.serializers import OrderOutputSerializer
from orders.api.views import IDEMPOTENCY_KEY_PARAMETER
from payments import services
from payments.api.serializers import (
    OrderPayInputSerializer,
    OrderRefundInputSerializer,
    WebhookAckSerializer,
)
from payments.webhooks import stripe_event_receive


def _order_body(order_id: uuid.UUID, actor: Actor) -> dict[str, Any]:
    order = order_selectors.order_get_for(actor=actor, order_id=order_id)
    return dict(OrderOutputSerializer(order).data)


class OrderPayApi(APIView):
    """Customer: pay (again) for an order in pending_payment or payment_failed."""

    @extend_schema(
        request=OrderPayInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: OrderOutputSerializer},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        idempotency_key_validate(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        actor = Actor.from_request(request)
        order_selectors.order_get_for(actor=actor, order_id=order_id)
        serializer = OrderPayInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payment_method = serializer.validated_data["payment_method"]

        def pay(_: IdempotencyContext) -> tuple[int, Any]:
            services.payment_authorize(
                order_id=order_id, payment_method=payment_method, actor=actor
            )
            return status.HTTP_200_OK, _order_body(order_id, actor)

        return idempotent_response(request, payload=request.data, operation=pay, atomic=False)


class OrderShipApi(APIView):
    """Staff: capture the authorized payment and ship the order."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        request=None, parameters=[IDEMPOTENCY_KEY_PARAMETER], responses={200: OrderOutputSerializer}
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        idempotency_key_validate(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        actor = Actor.from_request(request)
        order_selectors.order_get_for(actor=actor, order_id=order_id)

        def ship(_: IdempotencyContext) -> tuple[int, Any]:
            services.order_ship(order_id=order_id, actor=actor)
            return status.HTTP_200_OK, _order_body(order_id, actor)

        return idempotent_response(request, payload=request.data, operation=ship, atomic=False)


class OrderRefundApi(APIView):
    """Staff: refund all or part of what was captured."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        request=OrderRefundInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: OrderOutputSerializer},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        idempotency_key_validate(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        actor = Actor.from_request(request)
        order_selectors.order_get_for(actor=actor, order_id=order_id)
        serializer = OrderRefundInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        amount = serializer.validated_data.get("amount")

        def refund(context: IdempotencyContext) -> tuple[int, Any]:
            # A retry after an unknown outcome re-sends the same refund operation.
            services.order_refund(
                order_id=order_id,
                amount=amount,
                actor=actor,
                resume_operation_id=int(context.resource_id) if context.resource_id else None,
                on_prepared=lambda operation: context.checkpoint(str(operation.pk)),
            )
            return status.HTTP_200_OK, _order_body(order_id, actor)

        return idempotent_response(request, payload=request.data, operation=refund, atomic=False)


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
