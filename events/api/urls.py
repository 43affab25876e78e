from django.urls import path

from events.api import views

urlpatterns = [
    path("events/", views.EventFeedApi.as_view(), name="event-feed"),
    path("orders/<uuid:order_id>/events/", views.OrderEventsApi.as_view(), name="order-events"),
]
