from django.urls import path

from orders.api import views

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
]
