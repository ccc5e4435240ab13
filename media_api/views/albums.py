"""/api/v1/albums/: the caller's albums (Favourites first), their media and covers.

An album's count and cover are computed through Media.objects.visible_to, so trashed and
vault items are neither counted nor shown. The list is keyset-paginated (Favourites, then
the newest) in a constant six queries; an album's page walks its AlbumItem rows in the
timeline's order (album_item_timeline), so it reads about a page of rows whatever the album's size."""

from __future__ import annotations

from django.db.models import Count, OuterRef, Prefetch, Q, Subquery, UUIDField
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from gallery.exceptions import NotFound
from gallery.models import Album, AlbumItem, Media, Variant
from gallery.services.library import album_change_media, album_create, album_delete, album_update, favourites_for
from media_api.pagination import AlbumKeysetPagination, KeysetPagination
from media_api.renderers import FastJSONRenderer
from media_api.serializers import (
    AlbumCreateSerializer,
    AlbumSerializer,
    AlbumUpdateSerializer,
    MediaIdsChangeSerializer,
    MediaSerializer,
)
from media_api.views.media import as_rows, attach_relations


def hidden_items(user):
    """AlbumItem rows whose media visible_to(user) leaves out (Media.objects.hidden_from_library,
    a small partial index). Albums only ever hold their owner's media (gallery.services.library
    resolves every id through visible_ids), so an album's visible count is its rows minus
    these: two index ranges, not a read of each member."""
    return AlbumItem.objects.filter(media__in=Media.objects.owned_by(user).hidden_from_library().values("pk"))


def member_count(album_ref, user) -> Coalesce:
    """How many visible media an album holds, as a subquery of the album list (see hidden_items)."""
    members = AlbumItem.objects.filter(album=album_ref).order_by().values("album")
    hidden = hidden_items(user).filter(album=album_ref).order_by().values("album")
    total = Subquery(members.annotate(n=Count("pk")).values("n"))
    return Coalesce(total, 0) - Coalesce(Subquery(hidden.annotate(n=Count("pk")).values("n")), 0)


def visible_items(user):
    """AlbumItem rows of media visible_to(user) (the one rule, asked of each row the walk
    of album_item_timeline meets: a page reads about a page of rows)."""
    return AlbumItem.objects.filter(media__in=Media.objects.visible_to(user).values("pk"))


def albums_for(user):
    """The user's albums with `count` and `cover_pk` (chosen cover if still a visible member,
    else the newest visible member), Favourites first, then the newest albums."""
    members = visible_items(user).filter(album=OuterRef("pk"))
    chosen = members.filter(media=OuterRef("cover_id")).values("media_id")[:1]
    newest = members.order_by("-taken_at", "-media_id").values("media_id")[:1]
    cover_pk = Coalesce(Subquery(chosen), Subquery(newest), output_field=UUIDField())  # a UUID, as Media's pk
    return (Album.objects.filter(owner=user)
            .annotate(count=member_count(OuterRef("pk"), user), cover_pk=cover_pk)
            .order_by("-is_favourites", "-id"))


def with_covers(albums: list[Album]) -> list[Album]:
    """Attach each album's cover media (two queries for any number of albums)."""
    pks = {a.cover_pk for a in albums if a.cover_pk}
    variants = Prefetch("variants", queryset=Variant.objects.only("id", "media_id", "level"))
    covers = {m.pk: m for m in Media.objects.filter(pk__in=pks).only("id", "token").prefetch_related(variants)}
    for album in albums:
        album.cover_media = covers.get(album.cover_pk)
    return albums


def album_pk(raw) -> int:
    """An album id from the URL; anything else (not a number, past bigint) is the same 404."""
    text = str(raw)
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise NotFound("no such album")
    return int(text)


@extend_schema_view(
    list=extend_schema(summary="The caller's albums, Favourites first, then the newest"),
    create=extend_schema(summary="A new album", request=AlbumCreateSerializer, responses={201: AlbumSerializer}),
    retrieve=extend_schema(summary="One album"),
    partial_update=extend_schema(summary="Rename an album or choose its cover", request=AlbumUpdateSerializer,
                                 responses=AlbumSerializer),
    destroy=extend_schema(summary="Delete an album (its media stay); Favourites is 409", responses={204: None}),
)
class AlbumViewSet(viewsets.GenericViewSet):
    serializer_class = AlbumSerializer
    pagination_class = AlbumKeysetPagination
    keyset_fields = ("taken_at", "media_id")  # an album's page (KeysetPagination): its AlbumItem rows

    def get_queryset(self):
        return albums_for(self.request.user)

    def _album(self, pk) -> Album:
        return get_object_or_404(Album.objects.filter(owner=self.request.user), pk=album_pk(pk))

    def _one(self, pk) -> dict:
        return AlbumSerializer(with_covers([get_object_or_404(self.get_queryset(), pk=album_pk(pk))])[0]).data

    def list(self, request):
        favourites_for(user=request.user)  # every user has one, made on first use
        albums = with_covers(self.paginate_queryset(self.get_queryset()))
        return self.get_paginated_response(AlbumSerializer(albums, many=True).data)

    def create(self, request):
        data = AlbumCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        album = album_create(owner=request.user, **data.validated_data)
        return Response(self._one(album.pk), status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(self._one(pk))

    def partial_update(self, request, pk=None):
        album = self._album(pk)
        data = AlbumUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        album_update(album=album, **data.validated_data)
        return Response(self._one(album.pk))

    def destroy(self, request, pk=None):
        album_delete(album=self._album(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], summary="The album's media, newest first, with the total",
                   responses=MediaSerializer(many=True))
    @extend_schema(methods=["POST"], summary="Add and remove media (idempotent, at most 1000 ids)",
                   request=MediaIdsChangeSerializer, responses=AlbumSerializer)
    @action(detail=True, methods=["get", "post"], pagination_class=KeysetPagination,
            renderer_classes=[FastJSONRenderer])
    def media(self, request, pk=None):
        """GET: the album's visible media, newest first, with the total. POST {"add", "remove"}."""
        album = self._album(pk)
        if request.method == "POST":
            change = MediaIdsChangeSerializer(data=request.data)
            change.is_valid(raise_exception=True)
            album_change_media(album=album, **change.validated_data)
            return Response(self._one(album.pk))
        self.album = album
        # One keyset range of album_item_timeline, each row's media asked the visibility rule
        # and read as a MediaRow through the row's join: about a page of rows, whatever the
        # album's size; then the page's relations (the media list's path).
        rows = as_rows(visible_items(request.user).filter(album=album), through="media__")
        page = attach_relations(self.paginate_queryset(rows), owner=request.user)
        return self.get_paginated_response(MediaSerializer(page, many=True).data)

    def count_for(self, queryset) -> int:
        """An album page's total: its rows minus the hidden ones (see hidden_items)."""
        hidden = Media.objects.owned_by(self.request.user).hidden_from_library().values("pk")
        counts = AlbumItem.objects.filter(album=self.album).aggregate(
            rows=Count("pk"), hidden=Count("pk", filter=Q(media__in=hidden)))
        return counts["rows"] - counts["hidden"]
