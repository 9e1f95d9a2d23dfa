from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from broker import views

urlpatterns = [
    path("health/", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("worklist.api")),
    # Staff sign in with Django's own login form (fields username, password).
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The staff pages: front desk, procedure board, turnaround, queue health; "/" picks one.
    path("", include("frontdesk.urls")),
]
