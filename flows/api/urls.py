from django.urls import path

from flows.api import edits, returns, views, webhooks

urlpatterns = [
    path("orders/", views.OrderListCreateApi.as_view(), name="order-list"),
    path("orders/<uuid:order_id>/", views.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<uuid:order_id>/history/", views.OrderHistoryApi.as_view(), name="order-history"),
    path("orders/<uuid:order_id>/cancel/", views.OrderCancelApi.as_view(), name="order-cancel"),
    path(
        "orders/<uuid:order_id>/cancel-rest/",
        views.OrderCancelRestApi.as_view(),
        name="order-cancel-rest",
    ),
    path(
        "orders/<uuid:order_id>/transitions/",
        views.OrderTransitionApi.as_view(),
        name="order-transition",
    ),
    path("orders/<uuid:order_id>/pay/", views.OrderPayApi.as_view(), name="order-pay"),
    path("orders/<uuid:order_id>/ship/", views.OrderShipApi.as_view(), name="order-ship"),
    path("orders/<uuid:order_id>/refund/", views.OrderRefundApi.as_view(), name="order-refund"),
    path(
        "orders/<uuid:order_id>/edits/",
        edits.OrderEditCreateApi.as_view(),
        name="order-edit-list",
    ),
    path(
        "orders/<uuid:order_id>/edits/<uuid:edit_id>/",
        edits.OrderEditDetailApi.as_view(),
        name="order-edit-detail",
    ),
    path(
        "orders/<uuid:order_id>/edits/<uuid:edit_id>/commit/",
        edits.OrderEditCommitApi.as_view(),
        name="order-edit-commit",
    ),
    path(
        "orders/<uuid:order_id>/returns/",
        returns.OrderReturnListCreateApi.as_view(),
        name="order-return-list",
    ),
    path(
        "orders/<uuid:order_id>/returns/<uuid:return_id>/",
        returns.OrderReturnDetailApi.as_view(),
        name="order-return-detail",
    ),
    *(
        path(
            f"orders/<uuid:order_id>/returns/<uuid:return_id>/{action}/",
            view.as_view(),
            name=f"order-return-{action}",
        )
        for action, view in (
            ("authorize", returns.ReturnAuthorizeApi),
            ("reject", returns.ReturnRejectApi),
            ("cancel", returns.ReturnCancelApi),
            ("receive", returns.ReturnReceiveApi),
            ("refund", returns.ReturnRefundApi),
        )
    ),
    path("payments/stripe/webhook/", webhooks.StripeWebhookApi.as_view(), name="stripe-webhook"),
    path(
        "fulfilment/callbacks/",
        webhooks.ShipmentCallbackApi.as_view(),
        name="fulfilment-callback",
    ),
]
