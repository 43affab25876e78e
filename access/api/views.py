"""Staff manage API keys: list, create (the key is answered once), revoke, rotate."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access import selectors, services
from access.api.serializers import (
    ApiKeyCreatedOutputSerializer,
    ApiKeyCreateInputSerializer,
    ApiKeyOutputSerializer,
    ApiKeyRotateInputSerializer,
)
from access.services import IssuedKey
from core.actors import Actor


def _created(issued: IssuedKey) -> Response:
    body = dict(ApiKeyOutputSerializer(issued.api_key).data, key=issued.key)
    # The key is in this body only: no cache, no proxy may keep it.
    return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ApiKeyListCreateApi(APIView):
    @extend_schema(responses=ApiKeyOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(ApiKeyOutputSerializer(selectors.api_key_list(), many=True).data)

    @extend_schema(
        request=ApiKeyCreateInputSerializer, responses={201: ApiKeyCreatedOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        serializer = ApiKeyCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.api_key_create(
            **serializer.validated_data, actor=Actor.from_request(request)
        )
        return _created(issued)


class ApiKeyDetailApi(APIView):
    @extend_schema(responses=ApiKeyOutputSerializer)
    def get(self, request: Request, key_id: int) -> Response:
        return Response(ApiKeyOutputSerializer(selectors.api_key_get(key_id=key_id)).data)

    @extend_schema(responses=ApiKeyOutputSerializer)
    def delete(self, request: Request, key_id: int) -> Response:
        """Revoke the key (it stays listed, revoked)."""
        api_key = services.api_key_revoke(key_id=key_id, actor=Actor.from_request(request))
        return Response(ApiKeyOutputSerializer(api_key).data)


class ApiKeyRotateApi(APIView):
    @extend_schema(
        request=ApiKeyRotateInputSerializer, responses={201: ApiKeyCreatedOutputSerializer}
    )
    def post(self, request: Request, key_id: int) -> Response:
        selectors.api_key_get(key_id=key_id)
        serializer = ApiKeyRotateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.api_key_rotate(
            key_id=key_id, actor=Actor.from_request(request), **serializer.validated_data
        )
        return _created(issued)
