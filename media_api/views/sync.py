"""/api/v1/sync/: what changed in the caller's library since a cursor (phones).

`GET /api/v1/sync/?cursor=<c>&page_size=<n>` -> {"upserted": [media JSON], "deleted": [ids],
"cursor": "<c'>", "has_more": bool}. Without a cursor it starts from the beginning, which
lists the whole library page by page. The cursor is the per-owner change number of
gallery.services.changes (monotonic and in commit order, so a change committed during a sync
is never skipped). 400 for a cursor that is not one; 410 full_sync_required for one older
than the kept tombstones (SYNC_TOMBSTONE_DAYS).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, renderer_classes
from rest_framework.response import Response

from gallery.exceptions import InvalidInput
from gallery.models import Media
from gallery.services.changes import changes_page
from media_api.renderers import FastJSONRenderer
from media_api.serializers import MediaSerializer
from media_api.views.media import as_rows, attach_relations

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000


def _whole_number(raw: str | None, name: str, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > maximum:
        raise InvalidInput(f"{name}: a whole number from 0 to {maximum}" if name == "cursor"
                           else f"{name}: a whole number from 1 to {maximum}")
    return int(raw)


@extend_schema(
    summary="What changed since a cursor (phones)",
    parameters=[OpenApiParameter("cursor", OpenApiTypes.STR, description="the cursor of the last page; absent: from "
                                 "the beginning"),
                OpenApiParameter("page_size", OpenApiTypes.INT, description=f"1..{MAX_PAGE_SIZE}, "
                                 f"default {DEFAULT_PAGE_SIZE}")],
    responses={200: inline_serializer("SyncPage", {
        "upserted": MediaSerializer(many=True), "deleted": serializers.ListField(child=serializers.UUIDField()),
        "cursor": serializers.CharField(), "has_more": serializers.BooleanField()}), 410: None},
)
@api_view(["GET"])
@renderer_classes([FastJSONRenderer])
def sync(request):
    after = _whole_number(request.query_params.get("cursor"), "cursor", 0, 2**63 - 1)
    size = _whole_number(request.query_params.get("page_size"), "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if size < 1:
        raise InvalidInput(f"page_size: a whole number from 1 to {MAX_PAGE_SIZE}")
    # The media list's own shape: rows of the columns the JSON shows (no EXIF, no details);
    # variants, albums and tags attached to the whole page in three queries, the caller as owner.
    media = as_rows(Media.objects.visible_to(request.user))
    page = changes_page(user=request.user, after=after, limit=size, media=media)
    upserted = attach_relations(list(page.upserted), owner=request.user)
    return Response({"upserted": MediaSerializer(upserted, many=True).data,
                     "deleted": [str(media_id) for media_id in page.deleted],
                     "cursor": str(page.cursor), "has_more": page.has_more})
