from django.urls import path

from notifications.api import views

urlpatterns = [
    path(
        "notification-preferences/",
        views.NotificationPreferencesApi.as_view(),
        name="notification-preferences",
    ),
    path(
        "notifications/unsubscribe/",
        views.UnsubscribeApi.as_view(),
        name="notifications-unsubscribe",
    ),
]
