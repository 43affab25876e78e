"""The order edits API: price an edit (preview), read it, commit it. Each view parses its
input, calls one use case (flows.edit) or selector, and renders the edit."""

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import log_context
from core.actors import Actor
from core.api.idempotency import IDEMPOTENCY_KEY_HEADER, idempotent_response
from core.idempotency import IdempotencyContext, idempotency_key_validate
from flows.api.actions import IDEMPOTENCY_KEY_PARAMETER
from flows.api.serializers import (
    OrderEditCommitInputSerializer,
    OrderEditInputSerializer,
    OrderEditOutputSerializer,
)
from flows.edit import order_edit_commit, order_edit_propose
from orders import selectors


def edit_body(order_id: uuid.UUID | str, edit_id: uuid.UUID | str, actor: Actor) -> Any:
    """The edit as the actor may see it (its order visible to them), rendered."""
    order = selectors.order_get_for(actor=actor, order_id=order_id)
    return dict(
        OrderEditOutputSerializer(selectors.order_edit_get(order=order, edit_id=edit_id)).data
    )


class OrderEditCreateApi(APIView):
    @extend_schema(request=OrderEditInputSerializer, responses={201: OrderEditOutputSerializer})
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        """Price an edit of an order not yet routed; nothing about the order changes."""
        log_context.bind(order_id=order_id)
        actor = Actor.from_request(request)
        selectors.order_get_for(actor=actor, order_id=order_id)
        serializer = OrderEditInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        edit = order_edit_propose(
            order_id=order_id,
            lines={line["sku"]: line["quantity"] for line in data.get("lines", [])},
            shipping_address=(
                dict(data["shipping_address"]) if "shipping_address" in data else None
            ),
            actor=actor,
        )
        return Response(edit_body(order_id, edit.pk, actor), status=status.HTTP_201_CREATED)


class OrderEditDetailApi(APIView):
    @extend_schema(responses=OrderEditOutputSerializer)
    def get(self, request: Request, order_id: uuid.UUID, edit_id: uuid.UUID) -> Response:
        return Response(edit_body(order_id, edit_id, Actor.from_request(request)))


class OrderEditCommitApi(APIView):
    @extend_schema(
        request=OrderEditCommitInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: OrderEditOutputSerializer},
    )
    def post(self, request: Request, order_id: uuid.UUID, edit_id: uuid.UUID) -> Response:
        """Apply the edit, all or nothing; a committed edit is answered as it is. An edit
        that raises an authorized total re-authorizes it first."""
        idempotency_key_validate(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        log_context.bind(order_id=order_id)
        actor = Actor.from_request(request)
        edit_body(order_id, edit_id, actor)
        serializer = OrderEditCommitInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payment_method = serializer.validated_data.get("payment_method", "")

        def operation(context: IdempotencyContext) -> tuple[int, Any]:
            order_edit_commit(
                order_id=order_id, edit_id=edit_id, actor=actor, payment_method=payment_method
            )
            return status.HTTP_200_OK, edit_body(order_id, edit_id, actor)

        return idempotent_response(request, payload=request.data, operation=operation, atomic=False)
