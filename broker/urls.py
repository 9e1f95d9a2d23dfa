from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from broker import views

urlpatterns = [
    path("health/", views.health, name="health"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # The REST API: each app's own routes (worklist/api.py, mpps/api.py, hl7v2/api.py).
    path("api/v1/", include("worklist.api")),
    path("api/v1/", include("mpps.api")),
    path("api/v1/", include("hl7v2.api")),
    path("api/v1/", include("routing.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Staff sign in with Django's own login form (fields username, password).
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The staff pages: front desk, procedure board, turnaround, queue health; "/" picks one.
    path("", include("frontdesk.urls")),
]
