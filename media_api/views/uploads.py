"""/api/v1/direct-uploads/: presigned multipart uploads straight to S3 (tus is views.tus)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.response import Response
from rest_framework.reverse import reverse

from gallery.models import Media, Upload
from gallery.uploads import direct as direct_uploads
from gallery.uploads.lifecycle import album_for, upload_get_for, upload_terminate
from media_api.serializers import (
    DirectUploadCompleteSerializer,
    DirectUploadCreateSerializer,
    DirectUploadSerializer,
    MediaSerializer,
)


@extend_schema(summary="Start a direct (presigned multipart) upload to S3", request=DirectUploadCreateSerializer,
               responses={201: inline_serializer("DirectUploadPlan", {
                   **DirectUploadSerializer().get_fields(),
                   "parts": serializers.ListField(child=inline_serializer("DirectUploadPart", {
                       "number": serializers.IntegerField(), "url": serializers.URLField(),
                       "size": serializers.IntegerField()})),
                   "complete_url": serializers.URLField(), "url": serializers.URLField()})})
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


@extend_schema(methods=["GET"], summary="Where a direct upload stands", responses=DirectUploadSerializer)
@extend_schema(methods=["DELETE"], summary="Abort a direct upload", responses={204: None})
@api_view(["GET", "DELETE"])
def direct_upload_detail(request, upload_id):
    """GET: where the upload stands (and its media once complete). DELETE: abort it."""
    upload = upload_get_for(user=request.user, upload_id=upload_id, kind=Upload.Kind.DIRECT)
    if request.method == "DELETE":
        upload_terminate(upload=upload)
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(DirectUploadSerializer(upload).data)


DIRECT_UPLOAD_DONE = inline_serializer("DirectUploadDone", {
    "upload": DirectUploadSerializer(), "media": MediaSerializer(allow_null=True)})


@extend_schema(summary="Complete a direct upload after every part was PUT", request=DirectUploadCompleteSerializer,
               responses={201: DIRECT_UPLOAD_DONE, 200: DIRECT_UPLOAD_DONE})
@api_view(["POST"])
def direct_upload_complete(request, upload_id):
    """Complete the multipart upload after the client PUT every part; records the media."""
    upload = upload_get_for(user=request.user, upload_id=upload_id, kind=Upload.Kind.DIRECT)
    data = DirectUploadCompleteSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    result = direct_uploads.direct_upload_complete(upload=upload, parts=data.validated_data["parts"])
    upload.refresh_from_db()
    media = Media.objects.visible_to(request.user).prefetch_related("variants").filter(pk=upload.media_id).first()
    return Response({"upload": DirectUploadSerializer(upload).data,
                     "media": MediaSerializer(media).data if media is not None else None},
                    status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
