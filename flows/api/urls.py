from django.urls import path

from flows.api import views, webhooks

urlpatterns = [
    path("orders/", views.OrderListCreateApi.as_view(), name="order-list"),
    path("orders/<uuid:order_id>/", views.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<uuid:order_id>/history/", views.OrderHistoryApi.as_view(), name="order-history"),
    path("orders/<uuid:order_id>/cancel/", views.OrderCancelApi.as_view(), name="order-cancel"),
    path(
        "orders/<uuid:order_id>/transitions/",
        views.OrderTransitionApi.as_view(),
        name="order-transition",
    ),
    path("orders/<uuid:order_id>/pay/", views.OrderPayApi.as_view(), name="order-pay"),
    path("orders/<uuid:order_id>/ship/", views.OrderShipApi.as_view(), name="order-ship"),
    path("orders/<uuid:order_id>/refund/", views.OrderRefundApi.as_view(), name="order-refund"),
    path("payments/stripe/webhook/", webhooks.StripeWebhookApi.as_view(), name="stripe-webhook"),
    path(
        "fulfilment/callbacks/",
        webhooks.ShipmentCallbackApi.as_view(),
        name="fulfilment-callback",
    ),
]
