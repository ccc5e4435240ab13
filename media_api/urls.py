from __future__ import annotations

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from media_api.views import (
                             account,
                             albums,
                             export,
                             keys,
                             media,
                             search,
                             shares,
                             sync,
                             tags,
                             timeline,
                             trash,
                             tus,
                             uploads,
                             vault,
)

router = SimpleRouter()
router.register("media", media.MediaViewSet, basename="media")
router.register("shares", shares.ShareViewSet, basename="shares")
router.register("albums", albums.AlbumViewSet, basename="album")
router.register("trash", trash.TrashViewSet, basename="trash")

urlpatterns = [
    path("me/", account.me, name="me"),
    path("usage/", account.usage, name="usage"),
    path("keys/", keys.keys, name="api-keys"),
    path("keys/<uuid:key_id>/", keys.key_detail, name="api-key"),
    path("sync/", sync.sync, name="sync"),
    path("shared/<str:token>/", shares.shared, name="shared"),
    path("shared/<str:token>/unlock", shares.shared_unlock, name="shared-unlock"),
    path("shared/<str:token>/unlock/", shares.shared_unlock),
    path("search/", search.search, name="search"),
    # Before the router, whose media/<pk>/ would take "exists".
    re_path(r"^media/exists/?$", media.media_exists, name="media-exists"),
    # The router's route has the slash; the documented one has none.
    re_path(r"^media/(?P<pk>[^/.]+)/favourite$", media.MediaViewSet.as_view({"post": "favourite",
                                                                              "delete": "favourite"})),
    re_path(r"^tags/?$", tags.tag_list, name="tags"),
    re_path(r"^tags/bulk/?$", tags.tags_bulk, name="tags-bulk"),
    re_path(r"^trash/restore/?$", trash.restore, name="trash-restore"),
    re_path(r"^trash/empty/?$", trash.empty, name="trash-empty"),
    re_path(r"^timeline/buckets/?$", timeline.buckets, name="timeline-buckets"),
    # tus: the collection and the upload URLs, with or without a trailing slash.
    path("uploads/", tus.UploadCollection.as_view(), name="tus-uploads"),
    path("uploads", tus.UploadCollection.as_view()),
    path("uploads/<str:upload_id>", tus.UploadResource.as_view(), name="tus-upload"),
    path("uploads/<str:upload_id>/", tus.UploadResource.as_view()),
    path("direct-uploads/", uploads.direct_upload_create, name="direct-uploads"),
    path("direct-uploads/<str:upload_id>/", uploads.direct_upload_detail, name="direct-upload"),
    path("direct-uploads/<str:upload_id>/complete", uploads.direct_upload_complete, name="direct-upload-complete"),
    path("direct-uploads/<str:upload_id>/complete/", uploads.direct_upload_complete),
    path("export/", export.export_collection, name="exports"),
    path("export/<str:export_id>/", export.export_detail, name="export"),
    path("export/<str:export_id>/download", export.export_download, name="export-download"),
    re_path(r"^media/(?P<pk>[0-9a-fA-F-]{36})/move-to-vault/?$",
            media.MediaViewSet.as_view({"post": "move_to_vault"}), name="media-move-to-vault"),
    re_path(r"^vault/?$", vault.vault_detail, name="vault"),
    re_path(r"^vault/setup/?$", vault.setup, name="vault-setup"),
    re_path(r"^vault/unlock/?$", vault.unlock, name="vault-unlock"),
    re_path(r"^vault/lock/?$", vault.lock, name="vault-lock"),
    re_path(r"^vault/passphrase/?$", vault.passphrase, name="vault-passphrase"),
    path("vault/media/", vault.media_list, name="vault-media"),
    path("vault/media/<uuid:media_id>/", vault.media_item, name="vault-media-item"),
    path("vault/media/<uuid:media_id>/move-to-library", vault.move_to_library, name="vault-move-to-library"),
    path("vault/media/<uuid:media_id>/move-to-library/", vault.move_to_library),
    *router.urls,
]
