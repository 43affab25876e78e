"""The order API: checkout, reads, and one POST per order action. Each view parses its
input, calls one use case (flows) or selector (orders), and renders the order. Who may
call what is access.policy's table, applied by the default permission class."""

import uuid
from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpResponseBase
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.errors import TransitionNotAllowed
from access.policy import transition_allowed
from access.roles import roles_of
from core.actors import Actor
from core.api.conditional import PRIVATE, entity_tag, if_none_match, not_modified, tagged
from core.api.idempotency import IDEMPOTENCY_KEY_HEADER, idempotent_response
from core.api.pagination import CreatedAtCursorPagination
from core.idempotency import (
    CompletedKey,
    IdempotencyContext,
    StatementClaim,
    idempotency_key_validate,
)
from core.read_routing import ReplicaReadsMixin
from flows.api.actions import (
    IDEMPOTENCY_KEY_PARAMETER,
    OrderActionApi,
    order_action_schema,
    order_body,
)
from flows.api.checkout_input import checkout_input
from flows.api.filters import OrderFilter
from flows.api.serializers import (
    OrderCancelInputSerializer,
    OrderCreateInputSerializer,
    OrderOutputSerializer,
    OrderPayInputSerializer,
    OrderRefundInputSerializer,
    OrderStatusChangeOutputSerializer,
    OrderTransitionInputSerializer,
)
from flows.cancel import order_cancel, order_cancel_rest
from flows.pay import order_pay
from flows.place import (
    OrderLineRequest,
    order_checkout,
    order_checkout_written,
    order_place,
    order_place_written,
)
from flows.refund import order_refund
from flows.ship import order_ship
from flows.transitions import order_transition_by_name
from orders import selectors
from orders.models import Order
from orders.states import TRANSITIONS, OrderStatus
from pricing.services import quote_calls_out

# Part of every ETag of a page of orders: bump it when the page's rendering changes shape.
ORDER_PAGE_REPRESENTATION = "p1"


class OrderListCreateApi(ReplicaReadsMixin, ListModelMixin, GenericAPIView[Order]):
    """GET: the actor's orders, newest first, a cursor page at a time, read as plain rows
    (selectors.order_rows_load). The first page without filters carries an ETag from its
    version (selectors.order_first_page_version_for, one statement), and a GET with a
    matching If-None-Match is answered 304 after that statement alone. POST: checkout."""

    serializer_class = OrderOutputSerializer
    pagination_class = CreatedAtCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = OrderFilter

    def get_queryset(self) -> QuerySet[Order]:
        return selectors.order_list_for(actor=Actor.from_request(self.request))

    def get(self, request: Request) -> HttpResponseBase:
        actor = Actor.from_request(request)
        paginator = self.paginator
        assert isinstance(paginator, CreatedAtCursorPagination)  # noqa: S101 - set above
        etag = None
        # Only the first page unfiltered (page_size aside) has a version to validate.
        if request.query_params.keys() <= {paginator.page_size_query_param}:
            page_size = paginator.get_page_size(request)
            version = selectors.order_first_page_version_for(actor=actor, page_size=page_size)
            if version is not None:
                scope = "staff" if actor.is_staff else actor.user.pk  # type: ignore[union-attr]
                etag = entity_tag(ORDER_PAGE_REPRESENTATION, scope, page_size, version)
                if if_none_match(request, etag):
                    return not_modified(etag, PRIVATE)
        rows = selectors.order_list_rows_for(actor=actor)
        if etag is None:  # else there is nothing to filter by
            rows = self.filter_queryset(rows)
        page = paginator.paginate_queryset(rows, request, view=self) or []
        render = OrderOutputSerializer().to_representation
        response = paginator.get_paginated_response(
            [render(order) for order in selectors.order_rows_load(page)]
        )
        return response if etag is None else tagged(response, etag, PRIVATE)

    @extend_schema(
        request=OrderCreateInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: OrderOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        idempotency_key_validate(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        data = checkout_input(request.data)
        actor = Actor.from_request(request)
        order_input: dict[str, Any] = {
            "customer": actor.require_user(),
            "email": data["email"],
            "shipping_address": dict(data["shipping_address"]),
            "lines": [OrderLineRequest(line["sku"], line["quantity"]) for line in data["lines"]],
            "actor": actor,
            "shipping_method": data["shipping_method"],
        }
        payment_method = data.get("payment_method")

        def place(context: IdempotencyContext) -> tuple[int, Any]:
            # The order was just created for this user with its lines: nothing to read back.
            order = order_place(**order_input)
            return status.HTTP_201_CREATED, dict(OrderOutputSerializer(order).data)

        def checkout(context: IdempotencyContext) -> tuple[int, Any]:
            # A retry of a checkout whose payment step failed resumes that order.
            order_id = order_checkout(
                **order_input,
                payment_method=payment_method or "",
                resume_order_id=context.resource_id or None,
                on_created=lambda order: context.checkpoint(str(order.pk)),
            )
            return status.HTTP_201_CREATED, order_body(order_id, actor)

        def place_written(key: CompletedKey) -> dict[str, Any] | None:
            # The key and the order written in one statement, where that path covers it.
            return order_place_written(**order_input, key=key, render=_order_render)

        def checkout_written(claim: StatementClaim) -> tuple[int, Any] | None:
            # The key's claim, the order and its payment's checkpoint in one statement,
            # where that path covers it; then the provider call.
            body = order_checkout_written(
                **order_input,
                payment_method=payment_method or "",
                claim=claim,
                render=_order_render,
            )
            return None if body is None else (status.HTTP_201_CREATED, body)

        if not payment_method and not quote_calls_out():
            # One transaction: the key is claimed and the order written together.
            return idempotent_response(
                request, payload=request.data, operation=place, written=place_written
            )
        if not payment_method:
            # The tax service is called before order_place opens its transaction.
            return idempotent_response(request, payload=request.data, operation=place, atomic=False)
        # With a payment the provider is called between transactions of its own.
        return idempotent_response(
            request,
            payload=request.data,
            operation=checkout,
            atomic=False,
            claimed_by_statement=None if quote_calls_out() else checkout_written,
        )


def _order_render(order: selectors.OrderRow) -> dict[str, Any]:
    return OrderOutputSerializer().to_representation(order)


# Part of every order ETag: bump it when the order's rendering changes shape.
ORDER_REPRESENTATION = "o1"


class OrderDetailApi(ReplicaReadsMixin, APIView):
    """The order, with an ETag from its version (the order row's and its payments'
    updated_at): a GET with a matching If-None-Match is answered 304 after one statement
    that reads only the version, not the lines or payments."""

    @extend_schema(responses=OrderOutputSerializer)
    def get(self, request: Request, order_id: uuid.UUID) -> HttpResponseBase:
        actor = Actor.from_request(request)
        if request.META.get("HTTP_IF_NONE_MATCH"):
            version = selectors.order_version_for(actor=actor, order_id=order_id)
            etag = entity_tag(ORDER_REPRESENTATION, *version.tag_parts())
            if if_none_match(request, etag):
                return not_modified(etag, PRIVATE)
        order = selectors.order_detail_for(actor=actor, order_id=order_id)
        etag = entity_tag(ORDER_REPRESENTATION, *selectors.OrderVersion.of(order).tag_parts())
        return tagged(Response(OrderOutputSerializer(order).data), etag, PRIVATE)


class OrderHistoryApi(ReplicaReadsMixin, APIView):
    @extend_schema(responses=OrderStatusChangeOutputSerializer(many=True))
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = selectors.order_get_for(actor=Actor.from_request(request), order_id=order_id)
        history = selectors.order_history(order=order)
        return Response(OrderStatusChangeOutputSerializer(history, many=True).data)


@order_action_schema(OrderCancelInputSerializer)
class OrderCancelApi(OrderActionApi):
    """Cancel the order: warehouses withdraw, its stock is released and its
    authorization voided."""

    input_serializer_class = OrderCancelInputSerializer

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        if context.resource_id and (
            selectors.order_get_status(order_id=order_id) == OrderStatus.CANCELLED
        ):
            return  # a retry after the cancel committed but before its response was stored
        context.checkpoint(str(order_id))
        order_cancel(order_id=order_id, actor=actor, reason=data["reason"])


@order_action_schema(OrderCancelInputSerializer)
class OrderCancelRestApi(OrderActionApi):
    """Staff: cancel what has not shipped of a partially shipped order: warehouses
    withdraw their rest, its stock is released, and the order ships with what left."""

    input_serializer_class = OrderCancelInputSerializer

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        order_cancel_rest(order_id=order_id, actor=actor, reason=data["reason"])


@order_action_schema(OrderTransitionInputSerializer)
class OrderTransitionApi(OrderActionApi):
    """Staff: take any transition by name (manual operation; same use cases as the admin)."""

    input_serializer_class = OrderTransitionInputSerializer

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        order_transition_by_name(
            order_id=order_id, transition=data["transition"], actor=actor, reason=data["reason"]
        )

    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        # Which transition is a question of permission: asked before the Idempotency-Key
        # and the input are checked, like the endpoint's own roles.
        body = request.data
        transition = body.get("transition") if isinstance(body, dict) else None
        user = request.user
        roles = roles_of(user) if isinstance(user, User) else frozenset()
        if transition in TRANSITIONS and not transition_allowed(transition, roles=roles):
            raise TransitionNotAllowed(
                f"Your staff groups may not take '{transition}' "
                "(ship: warehouse; refund: support, finance; cancel and the rest: support)."
            )
        return super().post(request, order_id)


@order_action_schema(OrderPayInputSerializer)
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
        order_pay(order_id=order_id, payment_method=data["payment_method"], actor=actor)


@order_action_schema(None)
class OrderShipApi(OrderActionApi):
    """Staff: capture the authorized payment and ship the order."""

    def perform(
        self,
        *,
        order_id: uuid.UUID,
        actor: Actor,
        data: dict[str, Any],
        context: IdempotencyContext,
    ) -> None:
        order_ship(order_id=order_id, actor=actor)


@order_action_schema(OrderRefundInputSerializer)
class OrderRefundApi(OrderActionApi):
    """Staff: refund all or part of what was captured."""

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
        order_refund(
            order_id=order_id,
            amount=data.get("amount"),
            actor=actor,
            resume_operation_id=int(context.resource_id) if context.resource_id else None,
            on_prepared=lambda operation: context.checkpoint(str(operation.pk)),
        )
