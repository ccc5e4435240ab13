"""/api/v1/media/: the caller's media (list, one, delete, new token, multipart upload, exists).

Querysets come from the one visibility rule; writes call services."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.response import Response

from gallery.models import Media, Variant
from gallery.services.media import media_delete, media_ingest, media_rotate_token
from gallery.services.vault_media import vault_ingest, vault_move_in
from media_api.body_gate import multipart_quota_check
from media_api.pagination import KeysetPagination
from media_api.serializers import (
    VARIANT_FIELDS,
    MediaExistsSerializer,
    MediaListQuerySerializer,
    MediaSerializer,
    MediaUploadSerializer,
)
from media_api.views.vault import require_unlocked, revealed_json


@extend_schema_view(
    list=extend_schema(parameters=[MediaListQuerySerializer], summary="The library, newest first"),
    retrieve=extend_schema(summary="One media"),
    destroy=extend_schema(summary="Delete a media", responses={204: None}),
)
class MediaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                   viewsets.GenericViewSet):
    serializer_class = MediaSerializer
    pagination_class = KeysetPagination

    def get_queryset(self):
        # The one visibility rule, for every action: list, retrieve, delete, rotate-token.
        variants = Prefetch("variants", queryset=Variant.objects.only(*VARIANT_FIELDS))
        qs = Media.objects.visible_to(self.request.user).select_related("owner").prefetch_related(variants)
        if self.action == "list":
            query = MediaListQuerySerializer(data=self.request.query_params)
            query.is_valid(raise_exception=True)
            self.filters = query.validated_data
            # EXIF and details are never in the JSON: not read for a page of a hundred.
            qs = qs.defer("exif", "details")
            if sha := self.filters.get("sha256"):
                qs = qs.filter(sha256=sha.lower())
            if kind := self.filters.get("kind"):
                qs = qs.filter(kind=kind)
        return qs

    def count_for(self, queryset) -> int:
        """The list's total: the counters for the library or one kind (no scan); a lookup by
        SHA-256 counts its few rows through the (owner, sha256) index."""
        if self.filters.get("sha256"):
            return queryset.count()
        return Media.objects.visible_count(self.request.user, kind=self.filters.get("kind"))

    @extend_schema(summary="Upload one file (multipart, field `file`)", request={"multipart/form-data": MediaUploadSerializer},
                   responses={201: MediaSerializer, 200: MediaSerializer})
    def create(self, request):
        # Refuse before reading the body when it cannot fit. (Under ASGI the body gate did
        # so already, before Django received the body; under WSGI this is the first check.)
        declared = (request.META.get("CONTENT_LENGTH") or "").strip()
        if declared.isascii() and declared.isdigit() and len(declared) <= 20:
            multipart_quota_check(user=request.user, declared=int(declared))
        upload = MediaUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        file = upload.validated_data["file"]
        if upload.validated_data["vault"]:
            unlocked = require_unlocked(request)
            result = vault_ingest(owner=request.user, unlocked=unlocked, stream=file, size=file.size,
                                  filename=file.name, content_type=file.content_type)
            media = Media.objects.prefetch_related("variants").get(pk=result.media.pk)
            return Response(revealed_json(media, unlocked),
                            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
        result = media_ingest(owner=request.user, stream=file, size=file.size, filename=file.name,
                              content_type=file.content_type)
        media = self.get_queryset().get(pk=result.media.pk)
        return Response(MediaSerializer(media).data,
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)

    def perform_destroy(self, instance: Media) -> None:
        media_delete(media=instance)

    @extend_schema(summary="Move into the vault", request=None, responses=MediaSerializer)
    @action(detail=True, methods=["post"], url_path="move-to-vault")
    def move_to_vault(self, request, pk=None):
        """Into the caller's vault (unlocked by this credential): re-encrypted, sealed, out of the library."""
        unlocked = require_unlocked(request)
        media = vault_move_in(media=self.get_object(), unlocked=unlocked)
        return Response(revealed_json(Media.objects.prefetch_related("variants").get(pk=media.pk), unlocked))

    @extend_schema(summary="New unguessable URLs", request=None, responses=MediaSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request, pk=None):
        """New URLs for the original and variants; leaked old ones answer 404 from now on."""
        media = media_rotate_token(media=self.get_object())
        return Response(MediaSerializer(media).data)


@extend_schema(summary="Which SHA-256s the caller already has", request=MediaExistsSerializer, responses=inline_serializer(
    "MediaExists", {"exists": serializers.ListField(child=serializers.CharField()),
                    "missing": serializers.ListField(child=serializers.CharField()),
                    "media": serializers.DictField(child=serializers.UUIDField())}))
@api_view(["POST"])
def media_exists(request):
    """Which of these SHA-256s the caller already has, so a phone skips what the server holds."""
    query = MediaExistsSerializer(data=request.data)
    query.is_valid(raise_exception=True)
    wanted = {sha.lower() for sha in query.validated_data["sha256"]}
    # An unverified direct upload's SHA-256 is a claim: a phone must not skip bytes for it.
    found = dict(Media.objects.visible_to(request.user).filter(sha256__in=wanted)
                 .exclude(status=Media.Status.UPLOADING).values_list("sha256", "id"))
    return Response({"exists": sorted(found), "missing": sorted(wanted - found.keys()),
                     "media": {sha: str(media_id) for sha, media_id in sorted(found.items())}})
