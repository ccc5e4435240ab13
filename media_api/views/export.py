"""/api/v1/export/: a zip of the caller's library, built by a job, downloaded by its owner only."""

from __future__ import annotations

import uuid

from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.response import Response
from rest_framework.reverse import reverse

from gallery.auth import READ, READ_WRITE, authenticate
from gallery.delivery import ranges
from gallery.delivery.sources import FileSource, S3Source, body
from gallery.delivery.views import content_disposition
from gallery.exceptions import NotFound
from gallery.models import Export
from gallery.services.exports import export_request
from gallery.storage import is_s3, media_storage


def _document(request, export: Export) -> dict:
    doc = {"id": str(export.pk), "state": export.state, "created_at": export.created_at,
           "finished_at": export.finished_at, "size": export.size, "media_count": export.media_count,
           "error": export.error, "url": reverse("export", args=[export.pk], request=request), "download_url": None}
    if export.state == Export.State.READY:
        doc["download_url"] = reverse("export-download", args=[export.pk], request=request)
    return doc


EXPORT_SCHEMA = inline_serializer("Export", {
    "id": serializers.UUIDField(), "state": serializers.ChoiceField(choices=Export.State.values),
    "created_at": serializers.DateTimeField(), "finished_at": serializers.DateTimeField(allow_null=True),
    "size": serializers.IntegerField(help_text="bytes of the zip, once ready"),
    "media_count": serializers.IntegerField(), "error": serializers.CharField(allow_blank=True),
    "url": serializers.URLField(help_text="this export's status"),
    "download_url": serializers.URLField(allow_null=True, help_text="the zip (owner only, ranges), once ready"),
})


@extend_schema(methods=["POST"], summary="Export the library as a zip (a job)", request=None,
               responses={202: EXPORT_SCHEMA})
@extend_schema(methods=["GET"], summary="Your recent exports",
               responses=inline_serializer("ExportList", {"results": serializers.ListField(child=EXPORT_SCHEMA)}))
@api_view(["GET", "POST"])
def export_collection(request):
    """POST: queue an export of the library (202; one already under way is returned). GET: the caller's exports."""
    if request.method == "POST":
        export = export_request(user=request.user)
        return Response(_document(request, export), status=status.HTTP_202_ACCEPTED)
    exports = Export.objects.filter(owner=request.user).order_by("-created_at")[:20]
    return Response({"results": [_document(request, e) for e in exports]})


@extend_schema(summary="Where an export stands", responses=EXPORT_SCHEMA)
@api_view(["GET"])
def export_detail(request, export_id):
    """Where an export stands, and its download URL once ready."""
    export = Export.objects.filter(owner=request.user, pk=_uuid(export_id)).first()
    if export is None:
        raise NotFound("no such export")
    return Response(_document(request, export))


@require_http_methods(["GET", "HEAD"])
def export_download(request, export_id):
    """The zip, to its owner only (API key, provider token or session with media.read), with ranges
    so a large download can resume."""
    caller = authenticate(request)
    if caller is None:
        return JsonResponse({"error": "not_authenticated", "detail": "credentials are required"}, status=401)
    if not caller.scopes & {READ, READ_WRITE}:
        return JsonResponse({"error": "insufficient_scope", "detail": f"this credential lacks the scope {READ}"},
                            status=403)
    try:
        export = Export.objects.filter(owner=caller.user, pk=_uuid(export_id), state=Export.State.READY).first()
    except Http404:
        export = None
    if export is None:
        return JsonResponse({"error": "not_found", "detail": "no such export (or not ready)"}, status=404)
    rep = ranges.Representation(size=export.size, etag=f'"{export.pk.hex}"', last_modified=export.finished_at,
                                content_type="application/zip")
    decision = ranges.evaluate(request.method, request.headers, rep)
    chunks = iter(())
    if request.method != "HEAD" and decision.status in (200, 206):
        storage = media_storage()
        # Not through the block cache: one large zip would push out every thumbnail.
        source = S3Source(storage, export.key, export.size) if is_s3(storage) else FileSource(storage, export.key)
        chunks = body(source, decision)
    response = StreamingHttpResponse(chunks, status=decision.status)
    for name, value in decision.headers.items():
        response[name] = value
    stamp = export.finished_at.strftime("%Y-%m-%d")
    response["Content-Disposition"] = content_disposition("attachment", f"chipmunk-{caller.user.username}-{stamp}.zip")
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404("no such export") from None
