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
    ReturnOutputSerializer,
    ReturnReceiptCallbackInputSerializer,
    ShipmentCallbackInputSerializer,
    ShipmentCallbackOutputSerializer,
    WebhookAckSerializer,
)
from flows.provider_reports import stripe_event_receive
from flows.warehouse_reports import return_report_apply, shipment_report_apply
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
    """Warehouses report shipped / delivered (and return_received) here, signed with
    their shared secret."""

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
        if isinstance(request.data, dict) and request.data.get("event") == "return_received":
            return_serializer = ReturnReceiptCallbackInputSerializer(data=request.data)
            return_serializer.is_valid(raise_exception=True)
            received = return_report_apply(
                warehouse=warehouse,
                return_id=return_serializer.validated_data["return_id"],
                dispositions={
                    line["sku"]: line["disposition"]
                    for line in return_serializer.validated_data["lines"]
                },
            )
            return Response(ReturnOutputSerializer(received).data)
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
