from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from media_api import views

router = SimpleRouter()
router.register("media", views.MediaViewSet, basename="media")

urlpatterns = [
    path("usage/", views.usage, name="usage"),
    *router.urls,
]
