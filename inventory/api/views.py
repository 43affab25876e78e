"""The catalogue and stock API. Who may call what is access.policy's table, applied by
the default permission class (settings.REST_FRAMEWORK)."""

from django.http import HttpResponseBase
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from core.api.conditional import PUBLIC_REVALIDATE, if_none_match, not_modified, tagged
from inventory import selectors, services
from inventory.api.product_list import product_list_current
from inventory.api.serializers import (
    ProductInputSerializer,
    ProductOutputSerializer,
    StockAdjustmentInputSerializer,
    StockItemOutputSerializer,
    WarehouseInputSerializer,
    WarehouseOutputSerializer,
)


class ProductListCreateApi(APIView):
    @extend_schema(responses=ProductOutputSerializer(many=True))
    def get(self, request: Request) -> HttpResponseBase:
        """Active products with availability, possibly PRODUCT_LIST_CACHE_SECONDS old;
        ETag from the content, 304 on a matching If-None-Match."""
        current = product_list_current()
        if if_none_match(request, current.etag):
            return not_modified(current.etag, PUBLIC_REVALIDATE)
        return tagged(Response(current.products), current.etag, PUBLIC_REVALIDATE)

    @extend_schema(request=ProductInputSerializer, responses={201: ProductOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = ProductInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = services.product_create(
            **serializer.validated_data, actor=Actor.from_request(request)
        )
        product = selectors.product_get(sku=product.sku)
        return Response(ProductOutputSerializer(product).data, status=status.HTTP_201_CREATED)


class ProductDetailApi(APIView):
    @extend_schema(responses=ProductOutputSerializer)
    def get(self, request: Request, sku: str) -> Response:
        product = selectors.product_get(sku=sku)
        return Response(ProductOutputSerializer(product).data)


class WarehouseListCreateApi(APIView):
    @extend_schema(responses=WarehouseOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(WarehouseOutputSerializer(selectors.warehouse_list(), many=True).data)

    @extend_schema(request=WarehouseInputSerializer, responses={201: WarehouseOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = WarehouseInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        warehouse = services.warehouse_create(
            **serializer.validated_data, actor=Actor.from_request(request)
        )
        return Response(WarehouseOutputSerializer(warehouse).data, status=status.HTTP_201_CREATED)


class StockListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "sku", str, description="Only the stock items of this product (exact SKU)."
            )
        ],
        responses=StockItemOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        items = selectors.stock_item_list(sku=request.query_params.get("sku") or None)
        return Response(StockItemOutputSerializer(items, many=True).data)


class StockAdjustmentCreateApi(APIView):
    @extend_schema(
        request=StockAdjustmentInputSerializer, responses={201: StockItemOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        serializer = StockAdjustmentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        stock_item = services.stock_adjust(
            sku=data["sku"],
            warehouse_code=data["warehouse"],
            quantity=data["quantity"],
            reason=data["reason"],
            actor=Actor.from_request(request),
        )
        return Response(StockItemOutputSerializer(stock_item).data, status=status.HTTP_201_CREATED)
