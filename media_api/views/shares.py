"""Share links: the owner's /api/v1/shares/ and the public /api/v1/shared/<token>/.

The owner's side is scoped to the caller like every resource (another user's media, album or
share is 404). The public side needs no login: gallery.sharing opens the share (404 for
unknown, revoked and expired; 403 password_required until unlocked) and what it lists comes
from Media.objects.shared_by, the visibility rule's share half.
"""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from gallery.exceptions import InvalidInput, NotFound
from gallery.models import Album, Media, Share, Variant
from gallery.services.sharing import share_create, share_revoke
from gallery.sharing import share_live, share_open, share_password_check, share_unlock_cookie
from media_api.pagination import CURSOR_PARAM, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PAGE_SIZE_PARAM, KeysetPagination
from media_api.serializers import (
    VARIANT_FIELDS,
    ShareCreateSerializer,
    SharedMediaSerializer,
    ShareSerializer,
    ShareUnlockSerializer,
)


class ShareCursorPagination(CursorPagination):
    """Newest first by id; a cursor this server did not hand out is a 400, not DRF's 404."""

    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except Exception as exc:  # DRF raises NotFound("Invalid cursor")
            raise InvalidInput("cursor: not a cursor this server handed out") from exc

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None and (not raw.isascii() or not raw.isdigit() or int(raw) < 1):
            raise InvalidInput(f"page_size: a whole number from 1 to {self.max_page_size}")
        return super().get_page_size(request)


@extend_schema_view(
    list=extend_schema(summary="Your share links, newest first"),
    destroy=extend_schema(summary="Revoke a share link (it answers 404 from now on)", responses={204: None}),
)
class ShareViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin,
                   viewsets.GenericViewSet):
    serializer_class = ShareSerializer
    pagination_class = ShareCursorPagination

    def get_queryset(self):
        return Share.objects.owned_by(self.request.user)

    @extend_schema(summary="Share a media or an album", request=ShareCreateSerializer,
                   responses={201: ShareSerializer})
    def create(self, request):
        body = ShareCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        media = album = None
        if data["media"] is not None:
            media = Media.objects.visible_to(request.user).filter(pk=data["media"]).first()
            if media is None:
                raise NotFound("no such media")
        else:
            album = Album.objects.filter(owner=request.user, pk=data["album"]).first()
            if album is None:
                raise NotFound("no such album")
        share = share_create(owner=request.user, media=media, album=album, password=data["password"],
                             expires_at=data["expires_at"], allow_download=data["allow_download"],
                             show_metadata=data["show_metadata"])
        return Response(ShareSerializer(share).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, share: Share) -> None:
        share_revoke(share=share)


def _share_info(share: Share) -> dict:
    title = share.album.title if share.album_id else ""
    return {"kind": "album" if share.album_id else "media", "title": title, "expires_at": share.expires_at,
            "allow_download": share.allow_download, "show_metadata": share.show_metadata}


_SHARE_INFO = inline_serializer("SharedInfo", {
    "kind": serializers.CharField(help_text="media or album"), "title": serializers.CharField(allow_blank=True),
    "expires_at": serializers.DateTimeField(allow_null=True), "allow_download": serializers.BooleanField(),
    "show_metadata": serializers.BooleanField()})


_SHARED_PAGE = inline_serializer("SharedPage", {
    "share": _SHARE_INFO, "count": serializers.IntegerField(),
    "next": serializers.URLField(allow_null=True), "previous": serializers.URLField(allow_null=True),
    "results": SharedMediaSerializer(many=True)})


@extend_schema(
    summary="A share link's items (no login)", auth=[],
    parameters=[OpenApiParameter(CURSOR_PARAM, OpenApiTypes.STR, description="from a previous page's next link"),
                OpenApiParameter(PAGE_SIZE_PARAM, OpenApiTypes.INT, description=f"1..{MAX_PAGE_SIZE}, "
                                 f"default {DEFAULT_PAGE_SIZE}")],
    responses={200: _SHARED_PAGE, 403: None, 404: None},
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def shared(request, token: str):
    """The items of a share, newest first, with URLs that work for this share only."""
    share = share_open(request._request, token)
    variants = Prefetch("variants", queryset=Variant.objects.only(*VARIANT_FIELDS))
    qs = (Media.objects.shared_by(share).select_related("owner").only(*_SHARED_FIELDS)
          .prefetch_related(variants))
    paginator = KeysetPagination()
    page = paginator.paginate_queryset(qs, request)
    data = SharedMediaSerializer(page, many=True, context={"share": share}).data
    response = paginator.get_paginated_response(data)
    response.data = {"share": _share_info(share), **response.data}
    return response


# What the shared JSON reads of a media (and taken_at's zone of its owner).
_SHARED_FIELDS = ("id", "kind", "status", "original_filename", "content_type", "size", "taken_at",
                  "taken_at_offset_minutes", "width", "height", "duration", "latitude", "longitude", "altitude",
                  "place_city", "place_region", "place_country", "camera_make", "camera_model", "token",
                  "owner__time_zone")


@extend_schema(summary="Unlock a password-protected share link (sets its cookie)", auth=[],
               request=ShareUnlockSerializer, responses={204: None, 403: None, 404: None, 429: None})
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def shared_unlock(request, token: str):
    """Check a share's password and set its unlock cookie (204); 403 wrong, 429 throttled."""
    share = share_live(token)
    if share is None:
        raise NotFound("no such share")
    body = ShareUnlockSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    share_password_check(request._request, share, body.validated_data["password"])
    response = Response(status=status.HTTP_204_NO_CONTENT)
    if share.has_password:
        share_unlock_cookie(response, share)
    return response
