from __future__ import annotations

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from media_api.views import account, media, search, tus, uploads

router = SimpleRouter()
router.register("media", media.MediaViewSet, basename="media")

urlpatterns = [
    path("me/", account.me, name="me"),
    path("usage/", account.usage, name="usage"),
    path("search/", search.search, name="search"),
    # Before the router, whose media/<pk>/ would take "exists".
    re_path(r"^media/exists/?$", media.media_exists, name="media-exists"),
    # tus: the collection and the upload URLs, with or without a trailing slash.
    path("uploads/", tus.UploadCollection.as_view(), name="tus-uploads"),
    path("uploads", tus.UploadCollection.as_view()),
    path("uploads/<str:upload_id>", tus.UploadResource.as_view(), name="tus-upload"),
    path("uploads/<str:upload_id>/", tus.UploadResource.as_view()),
    path("direct-uploads/", uploads.direct_upload_create, name="direct-uploads"),
    path("direct-uploads/<str:upload_id>/", uploads.direct_upload_detail, name="direct-upload"),
    path("direct-uploads/<str:upload_id>/complete", uploads.direct_upload_complete, name="direct-upload-complete"),
    path("direct-uploads/<str:upload_id>/complete/", uploads.direct_upload_complete),
    *router.urls,
]
