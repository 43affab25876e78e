from django.urls import path

from fulfilment.api import views

urlpatterns = [
    path(
        "fulfilment/callbacks/",
        views.ShipmentCallbackApi.as_view(),
        name="fulfilment-callback",
    ),
]
