from django.urls import path

from events.api import subscriptions, views

urlpatterns = [
    path("events/", views.EventFeedApi.as_view(), name="event-feed"),
    path("events/stream/", views.EventFeedStreamApi.as_view(), name="event-feed-stream"),
    path("orders/<uuid:order_id>/events/", views.OrderEventsApi.as_view(), name="order-events"),
    path(
        "event-subscriptions/<int:subscription_id>/redeliveries/",
        subscriptions.EventSubscriptionRedeliverApi.as_view(),
        name="event-subscription-redeliver",
    ),
    path(
        "event-subscriptions/<int:subscription_id>/enable/",
        subscriptions.EventSubscriptionEnableApi.as_view(),
        name="event-subscription-enable",
    ),
    path(
        "orders/<uuid:order_id>/stream/",
        views.OrderEventStreamApi.as_view(),
        name="order-event-stream",
    ),
]
