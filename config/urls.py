from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from gallery import delivery, health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("health/", health.health, name="health"),
    path("api/v1/", include("media_api.urls")),
    path("m/<str:token>/<str:level>/", delivery.serve_media, name="media-file"),
    path("", include("gallery.urls")),
]
