"""The shape every POST /orders/{id}/<action>/ endpoint shares."""

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import log_context
from core.actors import Actor
from core.api.idempotency import IDEMPOTENCY_KEY_HEADER, idempotent_response
from core.idempotency import IdempotencyContext, idempotency_key_validate
from flows.api.serializers import OrderOutputSerializer
from orders import selectors

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_KEY_HEADER,
    type=str,
    location=OpenApiParameter.HEADER,
    required=True,
    description="1-255 printable ASCII characters, unique per intended operation.",
)


def order_action_schema(request: type[serializers.Serializer] | None) -> Any:
    """The OpenAPI description every order action shares: an Idempotency-Key, the
    action's input, the order afterwards."""
    return extend_schema_view(
        post=extend_schema(
            request=request,
            parameters=[IDEMPOTENCY_KEY_PARAMETER],
            responses={200: OrderOutputSerializer},
        )
    )


def order_body(order_id: uuid.UUID | str, actor: Actor) -> dict[str, Any]:
    """The order as the actor may see it, rendered for a response."""
    order = selectors.order_get_for(actor=actor, order_id=order_id)
    return dict(OrderOutputSerializer(order).data)


class OrderActionApi(APIView):
    """POST an action on one order: an Idempotency-Key is required, the order must be
    visible to the caller (else 404), the input is validated, and the answer is the
    order afterwards. Subclasses set `input_serializer_class` and implement `perform`.

    Actions may call the payment provider, so they run with atomic=False: their
    services open their own transactions around, never across, provider calls.
    """

    input_serializer_class: type[serializers.Serializer] | None = None

    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        idempotency_key_validate(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        log_context.bind(order_id=order_id)
        actor = Actor.from_request(request)
        selectors.order_get_for(actor=actor, order_id=order_id)
        data: dict[str, Any] = {}
        if self.input_serializer_class is not None:
            serializer = self.input_serializer_class(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = dict(serializer.validated_data)

        def operation(context: IdempotencyContext) -> tuple[int, Any]:
            self.perform(order_id=order_id, actor=actor, data=data, context=context)
            return status.HTTP_200_OK, order_body(order_id, actor)

        return idempotent_response(request, payload=request.data, operation=operation, atomic=False)

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        raise NotImplementedError
