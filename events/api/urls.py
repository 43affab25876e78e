from django.urls import path

from events.api import views

urlpatterns = [
    path("events/", views.EventFeedApi.as_view(), name="event-feed"),
    path("events/stream/", views.EventFeedStreamApi.as_view(), name="event-feed-stream"),
    path("orders/<uuid:order_id>/events/", views.OrderEventsApi.as_view(), name="order-events"),
    path(
        "orders/<uuid:order_id>/stream/",
        views.OrderEventStreamApi.as_view(),
        name="order-event-stream",
    ),
]
