from django.urls import path

from access.api import views

urlpatterns = [
    path("api-keys/", views.ApiKeyListCreateApi.as_view(), name="api-key-list"),
    path("api-keys/<int:key_id>/", views.ApiKeyDetailApi.as_view(), name="api-key-detail"),
    path("api-keys/<int:key_id>/rotate/", views.ApiKeyRotateApi.as_view(), name="api-key-rotate"),
]
