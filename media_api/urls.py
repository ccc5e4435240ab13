from __future__ import annotations

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from media_api.views import media as views
from media_api.views import tus as tus_views

router = SimpleRouter()
router.register("media", views.MediaViewSet, basename="media")

urlpatterns = [
    path("usage/", views.usage, name="usage"),
    # Before the router, whose media/<pk>/ would take "exists".
    re_path(r"^media/exists/?$", views.media_exists, name="media-exists"),
    # tus: the collection and the upload URLs, with or without a trailing slash.
    path("uploads/", tus_views.UploadCollection.as_view(), name="tus-uploads"),
    path("uploads", tus_views.UploadCollection.as_view()),
    path("uploads/<str:upload_id>", tus_views.UploadResource.as_view(), name="tus-upload"),
    path("uploads/<str:upload_id>/", tus_views.UploadResource.as_view()),
    path("direct-uploads/", views.direct_upload_create, name="direct-uploads"),
    path("direct-uploads/<str:upload_id>/", views.direct_upload_detail, name="direct-upload"),
    path("direct-uploads/<str:upload_id>/complete", views.direct_upload_complete, name="direct-upload-complete"),
    path("direct-uploads/<str:upload_id>/complete/", views.direct_upload_complete),
    *router.urls,
]
