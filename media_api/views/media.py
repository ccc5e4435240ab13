"""/api/v1/media/: the caller's media (list, one, delete, new token, multipart upload, exists).

Querysets come from the one visibility rule; writes call services."""

from __future__ import annotations

from django.db.models import Prefetch
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.response import Response

from gallery.models import Media, Variant
from gallery.services.media import media_delete, media_ingest, media_rotate_token
from media_api.body_gate import multipart_quota_check
from media_api.pagination import KeysetPagination
from media_api.renderers import FastJSONRenderer
from media_api.serializers import (
    MEDIA_VALUES,
    VARIANT_FIELDS,
    VARIANT_VALUES,
    MediaExistsSerializer,
    MediaListQuerySerializer,
    MediaSerializer,
    MediaUploadSerializer,
    media_values_json,
    values_supported,
)


class MediaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                   viewsets.GenericViewSet):
    serializer_class = MediaSerializer
    pagination_class = KeysetPagination
    renderer_classes = [FastJSONRenderer]

    def get_queryset(self):
        # The one visibility rule, for every action: list, retrieve, delete, rotate-token.
        qs = Media.objects.visible_to(self.request.user)
        if self.action != "list" or not values_supported():
            variants = Prefetch("variants", queryset=Variant.objects.only(*VARIANT_FIELDS))
            qs = qs.select_related("owner").prefetch_related(variants)
        if self.action == "list":
            query = MediaListQuerySerializer(data=self.request.query_params)
            query.is_valid(raise_exception=True)
            self.filters = query.validated_data
            # EXIF and details are never in the JSON: not read for a page of a hundred (list()
            # reads MEDIA_VALUES only).
            qs = qs.defer("exif", "details")
            if sha := self.filters.get("sha256"):
                qs = qs.filter(sha256=sha.lower())
            if kind := self.filters.get("kind"):
                qs = qs.filter(kind=kind)
        return qs

    def list(self, request, *args, **kwargs):
        """A page of values, not objects: the media's columns, then its variants' in one query."""
        if not values_supported():
            return super().list(request, *args, **kwargs)
        queryset = self.filter_queryset(self.get_queryset())
        rows = self.paginate_queryset(queryset.values(*MEDIA_VALUES))
        # Grouped by token (a string: no UUID object made per variant).
        variants: dict = {row["token"]: [] for row in rows}
        found = Variant.objects.filter(media_id__in=[row["id"] for row in rows]).values_list(*VARIANT_VALUES)
        for variant in found:
            variants[variant[0]].append(variant)
        return self.get_paginated_response([media_values_json(row, variants[row["token"]]) for row in rows])

    def count_for(self, queryset) -> int:
        """The list's total: the counters for the library or one kind (no scan); a lookup by
        SHA-256 counts its few rows through the (owner, sha256) index."""
        if self.filters.get("sha256"):
            return queryset.count()
        return Media.objects.visible_count(self.request.user, kind=self.filters.get("kind"))

    def create(self, request):
        # Refuse before reading the body when it cannot fit. (Under ASGI the body gate did
        # so already, before Django received the body; under WSGI this is the first check.)
        declared = (request.META.get("CONTENT_LENGTH") or "").strip()
        if declared.isascii() and declared.isdigit() and len(declared) <= 20:
            multipart_quota_check(user=request.user, declared=int(declared))
        upload = MediaUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        file = upload.validated_data["file"]
        result = media_ingest(owner=request.user, stream=file, size=file.size, filename=file.name,
                              content_type=file.content_type)
        media = self.get_queryset().get(pk=result.media.pk)
        return Response(MediaSerializer(media).data,
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)

    def perform_destroy(self, instance: Media) -> None:
        media_delete(media=instance)

    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request, pk=None):
        """New URLs for the original and variants; leaked old ones answer 404 from now on."""
        media = media_rotate_token(media=self.get_object())
        return Response(MediaSerializer(media).data)


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
