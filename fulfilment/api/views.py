from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from core.signing import SIGNATURE_HEADER, SignatureInvalid, verify
from fulfilment.services import shipment_callback_apply, warehouse_get_by_code

WAREHOUSE_HEADER = "X-Warehouse-Code"


class CallbackSignatureInvalid(DomainError):
    code = "callback_signature_invalid"
    status = 401
    title = "Callback signature missing, invalid or too old"


class ShipmentCallbackInputSerializer(serializers.Serializer):
    event = serializers.ChoiceField(choices=["shipped", "delivered"])
    shipment_reference = serializers.CharField(max_length=128)
    request_id = serializers.CharField(max_length=64, required=False, allow_blank=True)
    carrier = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    tracking_number = serializers.CharField(
        max_length=128, required=False, allow_blank=True, default=""
    )


class ShipmentCallbackOutputSerializer(serializers.Serializer):
    shipment_reference = serializers.CharField(source="reference")
    status = serializers.CharField()


class ShipmentCallbackApi(APIView):
    """Warehouses report shipped / delivered here, signed with their shared secret."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=ShipmentCallbackInputSerializer, responses={200: ShipmentCallbackOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        try:
            warehouse = warehouse_get_by_code(request.headers.get(WAREHOUSE_HEADER, ""))
            verify(
                request.body,
                request.headers.get(SIGNATURE_HEADER),
                warehouse.fulfilment_secret,
                settings.FULFILMENT_CALLBACK_TOLERANCE_SECONDS,
            )
        except (SignatureInvalid, DomainError) as error:
            raise CallbackSignatureInvalid() from error
        serializer = ShipmentCallbackInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        shipment = shipment_callback_apply(
            warehouse=warehouse,
            event=data["event"],
            reference=data["shipment_reference"],
            carrier=data["carrier"],
            tracking_number=data["tracking_number"],
        )
        return Response(ShipmentCallbackOutputSerializer(shipment).data)
