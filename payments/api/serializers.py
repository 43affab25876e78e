from rest_framework import serializers

from orders.api.serializers import PAYMENT_METHOD_FIELD_KWARGS


class OrderPayInputSerializer(serializers.Serializer):
    payment_method = serializers.RegexField(**PAYMENT_METHOD_FIELD_KWARGS)


class OrderRefundInputSerializer(serializers.Serializer):
    # Minor units; all that is left when omitted.
    amount = serializers.IntegerField(required=False, min_value=1, max_value=10**12)


class WebhookAckSerializer(serializers.Serializer):
    received = serializers.BooleanField()
    duplicate = serializers.BooleanField()
