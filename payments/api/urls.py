from django.urls import path

from payments.api import views

urlpatterns = [
    path("orders/<uuid:order_id>/pay/", views.OrderPayApi.as_view(), name="order-pay"),
    path("orders/<uuid:order_id>/ship/", views.OrderShipApi.as_view(), name="order-ship"),
    path("orders/<uuid:order_id>/refund/", views.OrderRefundApi.as_view(), name="order-refund"),
    path("payments/stripe/webhook/", views.StripeWebhookApi.as_view(), name="stripe-webhook"),
]
