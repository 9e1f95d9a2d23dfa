from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from broker import views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("health/", views.health, name="health"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # The REST API: each app's own routes (worklist/api.py, mpps/api.py, hl7v2/api.py).
    path("api/v1/", include("worklist.api")),
    path("api/v1/", include("mpps.api")),
    path("api/v1/", include("hl7v2.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
