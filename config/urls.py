from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import HealthApi, HealthLiveApi
from core.api.metrics import metrics_view

handler404 = "core.api.exceptions.not_found_view"
handler500 = "core.api.exceptions.server_error_view"

api_v1 = [
    path("", include("inventory.api.urls")),
    path("", include("flows.api.urls")),
    path("", include("events.api.urls")),
    path("", include("notifications.api.urls")),
    path("", include("access.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("health/", HealthApi.as_view(), name="health"),
    path("health/ready", HealthApi.as_view(), name="health-ready"),
    path("health/live", HealthLiveApi.as_view(), name="health-live"),
    # Outside /api/v1/ and its key table: a scraper holds METRICS_TOKEN instead.
    path("metrics", metrics_view, name="metrics"),
]
