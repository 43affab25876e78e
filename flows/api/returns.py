"""The returns API: open, list and read an order's returns, and one POST per return
action. Each view parses its input, calls one use case (flows.returns) or selector, and
renders the return."""

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import log_context
from core.actors import Actor
from core.api.idempotency import IDEMPOTENCY_KEY_HEADER, idempotent_response
from core.idempotency import IdempotencyContext, idempotency_key_validate
from core.read_routing import ReplicaReadsMixin
from flows.api.actions import IDEMPOTENCY_KEY_PARAMETER
from flows.api.serializers import (
    ReturnCreateInputSerializer,
    ReturnOutputSerializer,
    ReturnReasonInputSerializer,
    ReturnReceiveInputSerializer,
)
from flows.returns import (
    ReturnLineRequest,
    return_authorize,
    return_cancel,
    return_open,
    return_receive,
    return_refund,
    return_reject,
)
from orders import selectors
from orders.states import ReturnStatus


def return_body(order_id: uuid.UUID | str, return_id: uuid.UUID | str, actor: Actor) -> Any:
    """The return as the actor may see it (its order visible to them), rendered."""
    order = selectors.order_get_for(actor=actor, order_id=order_id)
    return dict(
        ReturnOutputSerializer(selectors.order_return_get(order=order, return_id=return_id)).data
    )


class OrderReturnListCreateApi(ReplicaReadsMixin, APIView):
    @extend_schema(responses=ReturnOutputSerializer(many=True))
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = selectors.order_get_for(actor=Actor.from_request(request), order_id=order_id)
        return Response(
            ReturnOutputSerializer(selectors.order_returns(order=order), many=True).data
        )

    @extend_schema(
        request=ReturnCreateInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: ReturnOutputSerializer},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        """Open a return for units of a shipped or delivered order."""
        idempotency_key_validate(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        log_context.bind(order_id=order_id)
        actor = Actor.from_request(request)
        selectors.order_get_for(actor=actor, order_id=order_id)
        serializer = ReturnCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def operation(context: IdempotencyContext) -> tuple[int, Any]:
            return_id = context.resource_id
            if not return_id:
                # A retry after the return committed but before its response was stored
                # renders that return instead of opening another.
                opened = return_open(
                    order_id=order_id,
                    lines=[
                        ReturnLineRequest(line["sku"], line["quantity"]) for line in data["lines"]
                    ],
                    reason=data["reason"],
                    actor=actor,
                    on_created=lambda created: context.checkpoint(str(created.pk)),
                )
                return_id = str(opened.pk)
            return status.HTTP_201_CREATED, return_body(order_id, return_id, actor)

        return idempotent_response(request, payload=request.data, operation=operation, atomic=False)


class OrderReturnDetailApi(ReplicaReadsMixin, APIView):
    @extend_schema(responses=ReturnOutputSerializer)
    def get(self, request: Request, order_id: uuid.UUID, return_id: uuid.UUID) -> Response:
        return Response(return_body(order_id, return_id, Actor.from_request(request)))


class ReturnActionApi(APIView):
    """POST an action on one return: an Idempotency-Key is required, the order must be
    visible to the caller (else 404), and the answer is the return afterwards."""

    input_serializer_class: type[serializers.Serializer] = ReturnReasonInputSerializer
    # The return's status once the action is done.
    target_status: str = ""

    def post(self, request: Request, order_id: uuid.UUID, return_id: uuid.UUID) -> Response:
        idempotency_key_validate(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        log_context.bind(order_id=order_id)
        actor = Actor.from_request(request)
        return_body(order_id, return_id, actor)
        serializer = self.input_serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)

        def operation(context: IdempotencyContext) -> tuple[int, Any]:
            # A retry after the action committed but before its response was stored
            # answers the return as it is.
            done = context.resource_id and (
                selectors.order_return_get(
                    order=selectors.order_get_for(actor=actor, order_id=order_id),
                    return_id=return_id,
                ).status
                == self.target_status
            )
            if not done:
                context.checkpoint(str(return_id))
                self.perform(order_id=order_id, return_id=return_id, actor=actor, data=data)
            return status.HTTP_200_OK, return_body(order_id, return_id, actor)

        return idempotent_response(request, payload=request.data, operation=operation, atomic=False)

    def perform(
        self, *, order_id: uuid.UUID, return_id: uuid.UUID, actor: Actor, data: dict[str, Any]
    ) -> None:
        raise NotImplementedError


def _return_action_schema(request: type[serializers.Serializer]) -> Any:
    return extend_schema(
        request=request,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: ReturnOutputSerializer},
    )


class ReturnAuthorizeApi(ReturnActionApi):
    """Staff: the customer may send the units back (emailed what to send)."""

    target_status = ReturnStatus.AUTHORIZED

    @_return_action_schema(ReturnReasonInputSerializer)
    def post(self, request: Request, order_id: uuid.UUID, return_id: uuid.UUID) -> Response:
        return super().post(request, order_id, return_id)

    def perform(
        self, *, order_id: uuid.UUID, return_id: uuid.UUID, actor: Actor, data: dict[str, Any]
    ) -> None:
        return_authorize(order_id=order_id, return_id=return_id, actor=actor, reason=data["reason"])


class ReturnRejectApi(ReturnActionApi):
    """Staff: refuse an open return."""

    target_status = ReturnStatus.REJECTED

    @_return_action_schema(ReturnReasonInputSerializer)
    def post(self, request: Request, order_id: uuid.UUID, return_id: uuid.UUID) -> Response:
        return super().post(request, order_id, return_id)

    def perform(
        self, *, order_id: uuid.UUID, return_id: uuid.UUID, actor: Actor, data: dict[str, Any]
    ) -> None:
        return_reject(order_id=order_id, return_id=return_id, actor=actor, reason=data["reason"])


class ReturnCancelApi(ReturnActionApi):
    """The customer or staff withdraw an open return."""

    target_status = ReturnStatus.CANCELLED

    @_return_action_schema(ReturnReasonInputSerializer)
    def post(self, request: Request, order_id: uuid.UUID, return_id: uuid.UUID) -> Response:
        return super().post(request, order_id, return_id)

    def perform(
        self, *, order_id: uuid.UUID, return_id: uuid.UUID, actor: Actor, data: dict[str, Any]
    ) -> None:
        return_cancel(order_id=order_id, return_id=return_id, actor=actor, reason=data["reason"])


class ReturnReceiveApi(ReturnActionApi):
    """Staff (support, warehouse): the units arrived; restock or dispose of each line.
    The refund follows on a worker (or POST .../refund/)."""

    target_status = ReturnStatus.RECEIVED

    input_serializer_class = ReturnReceiveInputSerializer

    @_return_action_schema(ReturnReceiveInputSerializer)
    def post(self, request: Request, order_id: uuid.UUID, return_id: uuid.UUID) -> Response:
        return super().post(request, order_id, return_id)

    def perform(
        self, *, order_id: uuid.UUID, return_id: uuid.UUID, actor: Actor, data: dict[str, Any]
    ) -> None:
        return_receive(
            order_id=order_id,
            return_id=return_id,
            dispositions={line["sku"]: line["disposition"] for line in data["lines"]},
            warehouse_code=data["warehouse"],
            actor=actor,
        )


class ReturnRefundApi(ReturnActionApi):
    """Staff: refund a received return now (a worker does it too); exactly once."""

    target_status = ReturnStatus.REFUNDED

    @_return_action_schema(ReturnReasonInputSerializer)
    def post(self, request: Request, order_id: uuid.UUID, return_id: uuid.UUID) -> Response:
        return super().post(request, order_id, return_id)

    def perform(
        self, *, order_id: uuid.UUID, return_id: uuid.UUID, actor: Actor, data: dict[str, Any]
    ) -> None:
        return_refund(order_id=order_id, return_id=return_id, actor=actor)
