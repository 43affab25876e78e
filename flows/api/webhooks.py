"""What outside systems report to oms: Stripe events and warehouse callbacks. Both are
anonymous and signed; each view verifies, then calls one use case."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from core.signing import SIGNATURE_HEADER, SignatureInvalid, verify
from flows.api.serializers import (
    ShipmentCallbackInputSerializer,
    ShipmentCallbackOutputSerializer,
    WebhookAckSerializer,
)
from flows.provider_reports import stripe_event_receive
from flows.warehouse_reports import shipment_report_apply
from fulfilment.errors import CallbackSignatureInvalid
from fulfilment.services import warehouse_get_by_code

WAREHOUSE_HEADER = "X-Warehouse-Code"


class StripeWebhookApi(APIView):
    """Stripe events: signature-checked, stored once by id, applied through the use cases."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(request=None, responses={200: WebhookAckSerializer})
    def post(self, request: Request) -> Response:
        created = stripe_event_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature")
        )
        return Response({"received": True, "duplicate": not created})


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
        shipment = shipment_report_apply(
            warehouse=warehouse,
            event=data["event"],
            reference=data["shipment_reference"],
            carrier=data["carrier"],
            tracking_number=data["tracking_number"],
        )
        return Response(ShipmentCallbackOutputSerializer(shipment).data)
