"""/api/v1/media/: the caller's media (list, one, delete, new token, multipart upload, exists).

Querysets come from the one visibility rule; writes call services."""

from __future__ import annotations

from django.utils.dateparse import parse_datetime
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from gallery.models import Media
from gallery.services.media import media_delete, media_ingest, media_rotate_token
from media_api.body_gate import multipart_quota_check
from media_api.serializers import (
    MediaExistsSerializer,
    MediaListQuerySerializer,
    MediaSerializer,
    MediaUploadSerializer,
)


class TimelinePagination(CursorPagination):
    ordering = ("-taken_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500

    def decode_cursor(self, request):
        # DRF checks the offset and direction of a cursor but hands its position to the
        # query as it came: junk there was a 500 (a bad date). Ours are aware datetimes.
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                position = parse_datetime(cursor.position)
            except ValueError:
                position = None
            if position is None or position.tzinfo is None:
                raise NotFound(self.invalid_cursor_message)
        return cursor

    def paginate_queryset(self, queryset, request, view=None):
        self.count = queryset.count()
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        return Response({"count": self.count, "next": self.get_next_link(),
                         "previous": self.get_previous_link(), "results": data})


class MediaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                   viewsets.GenericViewSet):
    serializer_class = MediaSerializer
    pagination_class = TimelinePagination

    def get_queryset(self):
        # The one visibility rule, for every action: list, retrieve, delete, rotate-token.
        qs = Media.objects.visible_to(self.request.user).select_related("owner").prefetch_related("variants")
        if self.action == "list":
            query = MediaListQuerySerializer(data=self.request.query_params)
            query.is_valid(raise_exception=True)
            if sha := query.validated_data.get("sha256"):
                qs = qs.filter(sha256=sha.lower())
            if kind := query.validated_data.get("kind"):
                qs = qs.filter(kind=kind)
        return qs

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
    found = dict(Media.objects.visible_to(request.user).filter(sha256__in=wanted).values_list("sha256", "id"))
    return Response({"exists": sorted(found), "missing": sorted(wanted - found.keys()),
                     "media": {sha: str(media_id) for sha, media_id in sorted(found.items())}})
