"""The mobile/web API under /api/v1/. Querysets are scoped to the caller; writes call services."""

from __future__ import annotations

from django.db.models import Count, Sum
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import api_view
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from gallery.exceptions import QuotaExceeded
from gallery.models import Media
from gallery.services import media_delete, media_ingest, quota_check
from media_api.serializers import MediaListQuerySerializer, MediaSerializer, MediaUploadSerializer

# A multipart body carries a few hundred bytes of framing around the file; a body larger
# than the free space by more than this cannot hold a file that fits.
MULTIPART_SLACK = 64 * 1024


class TimelinePagination(CursorPagination):
    ordering = ("-taken_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500

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
        qs = Media.objects.owned_by(self.request.user).select_related("owner").prefetch_related("variants")
        if self.action == "list":
            query = MediaListQuerySerializer(data=self.request.query_params)
            query.is_valid(raise_exception=True)
            qs = qs.filter(trashed_at__isnull=True, in_vault=False)
            if sha := query.validated_data.get("sha256"):
                qs = qs.filter(sha256=sha.lower())
            if kind := query.validated_data.get("kind"):
                qs = qs.filter(kind=kind)
        return qs

    def create(self, request):
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > MULTIPART_SLACK:
            # Refuse before reading the body when it cannot fit.
            try:
                quota_check(user=request.user, requested=declared - MULTIPART_SLACK)
            except QuotaExceeded as exc:
                exc.extra["requested"] = declared
                raise
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


@api_view(["GET"])
def usage(request):
    """The caller's storage: quota, used, reserved and a breakdown by kind."""
    user = request.user.__class__.objects.get(pk=request.user.pk)
    by_kind = {
        row["kind"]: {"count": row["count"], "bytes": row["bytes"] or 0}
        for row in Media.objects.owned_by(user).values("kind").annotate(count=Count("id"), bytes=Sum("size"))
    }
    return Response({
        "quota": user.quota_bytes, "used": user.used_bytes, "reserved": user.reserved_bytes,
        "free": user.free_bytes,
        "by_kind": {kind: by_kind.get(kind, {"count": 0, "bytes": 0}) for kind in Media.Kind.values},
    })
