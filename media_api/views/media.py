"""The mobile/web API under /api/v1/. Querysets are scoped to the caller; writes call services."""

from __future__ import annotations

from django.db.models import Count, Sum
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.reverse import reverse

from gallery.exceptions import QuotaExceeded
from gallery.models import Media, Upload
from gallery.services.accounts import quota_check
from gallery.services.media import media_delete, media_ingest, media_rotate_token
from gallery.uploads import direct as direct_uploads
from gallery.uploads.lifecycle import album_for, upload_get_for, upload_terminate
from media_api.serializers import (
    DirectUploadCompleteSerializer,
    DirectUploadCreateSerializer,
    DirectUploadSerializer,
    MediaExistsSerializer,
    MediaListQuerySerializer,
    MediaSerializer,
    MediaUploadSerializer,
)

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
    found = dict(Media.objects.owned_by(request.user).filter(sha256__in=wanted)
                 .exclude(status=Media.Status.UPLOADING).values_list("sha256", "id"))
    return Response({"exists": sorted(found), "missing": sorted(wanted - found.keys()),
                     "media": {sha: str(media_id) for sha, media_id in sorted(found.items())}})


@api_view(["POST"])
def direct_upload_create(request):
    """Reserve the size and hand out presigned part URLs (S3 storage only; 409 on local disk)."""
    data = DirectUploadCreateSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    fields = data.validated_data
    plan = direct_uploads.direct_upload_create(
        owner=request.user, filename=fields["filename"], size=fields["size"], content_type=fields["content_type"],
        sha256=fields["sha256"], album=album_for(owner=request.user, album_id=fields["album"]))
    url = reverse("direct-upload", args=[plan.upload.pk], request=request)
    return Response({**DirectUploadSerializer(plan.upload).data, "parts": plan.parts,
                     "complete_url": url + "complete", "url": url}, status=status.HTTP_201_CREATED)


@api_view(["GET", "DELETE"])
def direct_upload_detail(request, upload_id):
    """GET: where the upload stands (and its media once complete). DELETE: abort it."""
    upload = upload_get_for(user=request.user, upload_id=upload_id, kind=Upload.Kind.DIRECT)
    if request.method == "DELETE":
        upload_terminate(upload=upload)
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(DirectUploadSerializer(upload).data)


@api_view(["POST"])
def direct_upload_complete(request, upload_id):
    """Complete the multipart upload after the client PUT every part; records the media."""
    upload = upload_get_for(user=request.user, upload_id=upload_id, kind=Upload.Kind.DIRECT)
    data = DirectUploadCompleteSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    result = direct_uploads.direct_upload_complete(upload=upload, parts=data.validated_data["parts"])
    upload.refresh_from_db()
    media = Media.objects.owned_by(request.user).prefetch_related("variants").filter(pk=upload.media_id).first()
    return Response({"upload": DirectUploadSerializer(upload).data,
                     "media": MediaSerializer(media).data if media is not None else None},
                    status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


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
