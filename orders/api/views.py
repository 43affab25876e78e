import uuid
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet, prefetch_related_objects
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from core.api.idempotency import IDEMPOTENCY_KEY_HEADER, idempotent_response
from core.api.pagination import CreatedAtCursorPagination
from core.idempotency import IdempotencyContext, idempotency_key_validate
from orders import selectors, services
from orders.api.actions import IDEMPOTENCY_KEY_PARAMETER, OrderActionApi, order_body
from orders.api.filters import OrderFilter
from orders.api.serializers import (
    OrderCancelInputSerializer,
    OrderCreateInputSerializer,
    OrderOutputSerializer,
    OrderStatusChangeOutputSerializer,
    OrderTransitionInputSerializer,
)
from orders.models import Order
from orders.services import OrderLineRequest
from orders.states import OrderStatus
from payments import services as payment_services


class OrderListCreateApi(ListModelMixin, GenericAPIView[Order]):
    serializer_class = OrderOutputSerializer
    pagination_class = CreatedAtCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = OrderFilter

    def get_queryset(self) -> QuerySet[Order]:
        return selectors.order_list_for(actor=Actor.from_request(self.request))

    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(
        request=OrderCreateInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: OrderOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        idempotency_key_validate(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        serializer = OrderCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        actor = Actor.from_request(request)

        payment_method = data.get("payment_method")

        def order_create(on_created: Callable[[Order], None] | None = None) -> Order:
            return services.order_place(
                customer=actor.require_user(),
                email=data["email"],
                shipping_address=dict(data["shipping_address"]),
                lines=[OrderLineRequest(line["sku"], line["quantity"]) for line in data["lines"]],
                actor=actor,
                on_created=on_created,
            )

        def place(context: IdempotencyContext) -> tuple[int, Any]:
            if not payment_method:
                order = order_create()
                # The order was just created for this user: no need to read it back.
                prefetch_related_objects([order], "lines", "payments")
                return status.HTTP_201_CREATED, dict(OrderOutputSerializer(order).data)
            # A retry of a checkout whose payment step failed resumes that order; only a
            # checkout with payment is multi-step, so only it checkpoints.
            order_id: Any = (
                context.resource_id
                or order_create(on_created=lambda o: context.checkpoint(str(o.pk))).pk
            )
            payment_services.payment_authorize(
                order_id=order_id, payment_method=payment_method, actor=actor
            )
            return status.HTTP_201_CREATED, order_body(order_id, actor)

        # With a payment the provider is called between two transactions of its own.
        return idempotent_response(
            request, payload=request.data, operation=place, atomic=not payment_method
        )


class OrderDetailApi(APIView):
    @extend_schema(responses=OrderOutputSerializer)
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        return Response(order_body(order_id, Actor.from_request(request)))


class OrderHistoryApi(APIView):
    @extend_schema(responses=OrderStatusChangeOutputSerializer(many=True))
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = selectors.order_get_for(actor=Actor.from_request(request), order_id=order_id)
        history = selectors.order_history(order=order)
        return Response(OrderStatusChangeOutputSerializer(history, many=True).data)


@extend_schema_view(
    post=extend_schema(
        request=OrderCancelInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: OrderOutputSerializer},
    )
)
class OrderCancelApi(OrderActionApi):
    """Cancel the order, release its stock and void its authorization."""

    input_serializer_class = OrderCancelInputSerializer

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        if context.resource_id:
            # A retry after the cancel committed but before its response was stored.
            order = selectors.order_get_for(actor=actor, order_id=order_id)
            if order.status == OrderStatus.CANCELLED:
                payment_services.payments_void_for_order(order_id=order_id, actor=actor)
                return
        else:
            context.checkpoint(str(order_id))
        payment_services.order_cancel_and_void(
            order_id=order_id, actor=actor, reason=data["reason"]
        )


@extend_schema_view(
    post=extend_schema(
        request=OrderTransitionInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: OrderOutputSerializer},
    )
)
class OrderTransitionApi(OrderActionApi):
    """Staff: take any transition by name (manual operation; same service as the admin)."""

    permission_classes = [IsAdminUser]
    input_serializer_class = OrderTransitionInputSerializer

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        payment_services.order_transition_with_payments(
            order_id=order_id, transition=data["transition"], actor=actor, reason=data["reason"]
        )
