"""/api/v1/media/: the caller's media (list, one, edit, trash, favourite, new token, multipart
upload, exists).

Querysets come from the one visibility rule; writes call services."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.models import DateTimeField, QuerySet, Sum
from django.db.models.query import ValuesListIterable
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.response import Response

from gallery.compiled import CompiledQuery, sample_user
from gallery.models import Album, KindUsage, Media, Tag, TimelineDay, User, Variant
from gallery.services.edits import media_edit
from gallery.services.library import media_favourite
from gallery.services.media import media_ingest, media_rotate_token
from gallery.services.trash import media_trash
from gallery.services.vault_media import vault_ingest, vault_move_in
from media_api.body_gate import multipart_quota_check
from media_api.pagination import KeysetPagination, keyset_page
from media_api.renderers import FastJSONRenderer
from media_api.serializers import (
    MediaEditSerializer,
    MediaExistsSerializer,
    MediaListQuerySerializer,
    MediaSerializer,
    MediaUploadSerializer,
)
from media_api.views.vault import require_unlocked, revealed_json

# What attach_relations loads of a variant, after the media id (the text of the database's
# form of the id): a page's variants are these plain tuples, (media id, level, width, height,
# size, content type), as the database hands them over (a named tuple each cost ~0.3 ms a page).
VARIANT_COLUMNS = ("level", "width", "height", "size", "content_type")


class AlbumRow(NamedTuple):
    pk: int
    is_favourites: bool


class TagRow(NamedTuple):
    name: str


# The media columns MediaSerializer reads: what a page loads of each media, as a MediaRow (never
# EXIF or details). A column the JSON starts to read goes here too: the test comparing a row's
# JSON with the model instance's fails until it does.
PAGE_COLUMNS = (
    "id", "owner_id", "kind", "status", "error", "original_filename", "description", "content_type", "size", "sha256",
    "taken_at", "taken_at_offset_minutes", "taken_at_estimated", "taken_at_manual", "width", "height", "duration",
    "latitude", "longitude", "altitude", "location_manual", "place_city", "place_region", "place_country",
    "camera_make", "camera_model", "token", "created_at", "updated_at", "trashed_at",
)


class MediaRow:
    """A media of a page as its PAGE_COLUMNS' values, read like the model by MediaSerializer
    (its properties are the model's own): a model instance costs ~25 µs, a page of a hundred
    ~2.5 ms. Only for the JSON; anything that writes loads the model."""

    taken_at_local = Media.taken_at_local
    place = Media.place
    camera = Media.camera

    @property
    def pk(self):
        return self.id


class _MediaRows(ValuesListIterable):
    """values_list's rows as MediaRows, with the same values as its converters give (aware
    datetimes, UUIDs, bools), converted in one pass without their per-value calls; on
    PostgreSQL timestamps are read by psycopg's C loader (Django registers a Python one)."""

    def __iter__(self):
        queryset = self.queryset
        connection = connections[queryset.db]
        compiler = queryset.query.get_compiler(queryset.db)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return
        if not sql:
            return
        yield from media_rows(connection, compiler, sql, params)


def media_rows(connection, compiler, sql: str, params) -> list[MediaRow]:
    """The MediaRows of `sql` (as_rows' select of PAGE_COLUMNS, as `compiler` wrote it) run with
    `params` on `connection`."""
    fields = [selected[0] for selected in compiler.select[: compiler.col_count]]
    convert = [(PAGE_COLUMNS[pos], _fast_converter(converters, expression, connection))
               for pos, (converters, expression) in compiler.get_converters(fields).items()]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.cursor.adapters.register_loader("timestamptz", _timestamptz_loader())
            convert += [(name, _aware(connection.timezone)) for name in TIMESTAMP_COLUMNS]
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    new, width, rows = object.__new__, compiler.col_count, []
    for values in fetched:
        row = new(MediaRow)
        row.__dict__ = values = dict(zip(PAGE_COLUMNS, values[:width]))
        for name, function in convert:
            values[name] = function(values[name])
        rows.append(row)
    return rows


TIMESTAMP_COLUMNS = tuple(name for name in PAGE_COLUMNS if isinstance(Media._meta.get_field(name), DateTimeField))


@functools.cache
def _timestamptz_loader() -> type:
    """psycopg's own timestamptz loader (its C one with the binary package): Django's subclasses
    the pure-Python loader, ~5 µs a value, ~2 ms for a page's four timestamps a media."""
    from psycopg import postgres
    from psycopg.pq import Format

    return postgres.adapters.get_loader(postgres.types["timestamptz"].oid, Format.TEXT)


def _aware(zone):
    """What Django's timestamptz loader returns: the value with the connection's time zone
    (the session's, UTC, which psycopg's loader gives as a ZoneInfo)."""

    def aware(value):
        return None if value is None else value.replace(tzinfo=zone)

    return aware


def _fast_converter(converters: list, expression, connection):
    """One function doing what `converters` (the compiler's, for one column) do: SQLite's
    datetime, UUID and boolean converters without their per-value method calls, anything
    else as it is."""
    ops = connection.ops
    if len(converters) == 1:
        converter = getattr(converters[0], "__func__", None)
        if converter is type(ops).convert_datetimefield_value and settings.USE_TZ:
            zone, fromisoformat = connection.timezone, datetime.fromisoformat

            def aware(value):
                if value is None:
                    return None
                if not isinstance(value, datetime):
                    try:  # parse_datetime's own first try
                        value = fromisoformat(value)
                    except ValueError:
                        value = parse_datetime(value)
                return value if value.tzinfo is not None else value.replace(tzinfo=zone)

            return aware
        if converter is type(ops).convert_uuidfield_value:
            # One UUID a value a page (the functions are made for each page): a page's owner_id
            # is the same for every row.
            made = {}

            def to_uuid(value):
                if value is None:
                    return None
                found = made.get(value)
                if found is None:
                    found = made[value] = uuid.UUID(value)
                return found

            return to_uuid
        if converter is type(ops).convert_booleanfield_value:
            return lambda value: bool(value) if value in (1, 0) else value

    def convert(value):
        for converter in converters:
            value = converter(value, expression, connection)
        return value

    return convert


def as_rows(queryset: QuerySet, *, through: str = "") -> QuerySet:
    """The queryset's media as MediaRows (values_list's iterable swapped, as its own named=True
    does): filters, ordering and slicing stay the queryset's. `through` names the media of a
    queryset of another model ("media__" for AlbumItem rows), read through its join."""
    rows = queryset.values_list(*(through + column for column in PAGE_COLUMNS))
    rows._iterable_class = _MediaRows
    return rows


# The query parameters that filter the list (MediaListQuerySerializer's fields).
LIST_FILTER_PARAMS = tuple(MediaListQuerySerializer().fields)


# The list's filters (MediaListQuerySerializer's), as the (field, value) pairs the list filters on.
def list_filters(validated: dict) -> list[tuple[str, object]]:
    found = []
    if sha := validated.get("sha256"):
        found.append(("sha256", sha.lower()))
    if kind := validated.get("kind"):
        found.append(("kind", kind))
    if bucket := validated.get("bucket"):
        size, first = bucket
        found.append(("taken_month" if size == "month" else "taken_day", first))
    return found


# Two sample values of each argument a page query takes, all distinct (CompiledQuery tells the
# arguments apart by them).
_SAMPLES = {
    "user": (uuid.UUID(int=1), uuid.UUID(int=2)),
    "sha256": ("a" * 64, "b" * 64),
    "kind": ("sampleA", "sampleB"),
    "taken_month": (date(2001, 1, 1), date(2002, 2, 1)),
    "taken_day": (date(2003, 3, 3), date(2004, 4, 4)),
    "position": ((datetime(2005, 5, 5, tzinfo=UTC), uuid.UUID(int=3)),
                 (datetime(2006, 6, 6, tzinfo=UTC), uuid.UUID(int=4))),
}
_PAGE_QUERIES: dict[tuple, CompiledQuery | None] = {}
_PAGE_QUERIES_LIMIT = 256  # shapes kept (a compiled query holds its compiler, some kB)


def page_query(using: str, filters: tuple[str, ...], direction: str, positioned: bool,
               limit: int) -> CompiledQuery | None:
    """The list's page of this shape (its filters, direction, a cursor or none, its length) as
    the ORM writes it from the visibility rule, compiled once; arguments (user id, the filters'
    values, then the cursor's taken_at and id). None when it cannot be one compiled query."""
    shape = (using, filters, direction, positioned, limit)
    try:
        return _PAGE_QUERIES[shape]
    except KeyError:
        pass

    def build(user_id, *values):
        queryset = Media.objects.visible_to(sample_user(user_id))
        for name, value in zip(filters, values):
            queryset = queryset.filter(**{name: value})
        position = tuple(values[len(filters):]) or None
        return keyset_page(as_rows(queryset), ("taken_at", "id"), direction, position, limit)

    samples = tuple((_SAMPLES["user"][i], *(_SAMPLES[name][i] for name in filters),
                     *(_SAMPLES["position"][i] if positioned else ())) for i in (0, 1))
    try:
        query = CompiledQuery(build, samples, using=using)
    except (ValueError, EmptyResultSet):
        query = None  # the rule does not compile to one query with these arguments: the ORM's path
    if len(_PAGE_QUERIES) >= _PAGE_QUERIES_LIMIT:
        _PAGE_QUERIES.clear()
    _PAGE_QUERIES[shape] = query
    return query


@functools.cache
def count_query(using: str, of_kind: bool) -> CompiledQuery | None:
    """Media.objects.visible_count_rows compiled once: arguments (user id, the kind if `of_kind`)."""

    def build(user_id, *kind):
        return Media.objects.visible_count_rows(sample_user(user_id), kind=kind[0] if kind else None)

    samples = ((_SAMPLES["user"][0], *_SAMPLES["kind"][:of_kind]), (_SAMPLES["user"][1], *_SAMPLES["kind"][1:1 + of_kind]))
    try:
        return CompiledQuery(build, samples, using=using)
    except ValueError:
        return None  # the count is not one query with these arguments: visible_count's own


def attach_relations(media: list[Media | MediaRow], *, owner: User | None = None) -> list[Media | MediaRow]:
    """Load what MediaSerializer shows besides the row (variants, albums, tags) for a page in
    three queries, whatever its length, as plain tuples: model instances and a related manager
    per media and relation cost more CPU than the rest of the page. `owner`, the caller, becomes
    the owner of the media that are theirs (its time zone is all the JSON reads of it): the
    page needs no User row per media. MediaRows of anyone else get theirs in one more query
    (the visibility rule lists only the caller's own: it does not happen)."""
    if not media:
        return media
    first = media[0]
    connection = connections[first._state.db if isinstance(first, Media) and first._state.db else DEFAULT_DB_ALIAS]
    # Rows are matched by the text of the database's own form of the media id (hex on SQLite,
    # the dashed form on PostgreSQL), with the ids sent as they are: the ORM's IN filter, its
    # converters and a UUID object per row (hashed in Python) cost more than the rows.
    to_db = Media._meta.pk.get_db_prep_value
    by_key, keys = {}, []
    for m in media:
        m.variant_list, m.album_list, m.tag_list = [], [], []
        key = to_db(m.pk, connection)
        keys.append(key)
        by_key[str(key)] = m
        if isinstance(m, MediaRow):
            m.owner = owner if owner is not None and m.owner_id == owner.pk else None
        elif owner is not None and m.owner_id == owner.pk and not Media.owner.is_cached(m):
            Media.owner.field.set_cached_value(m, owner)
    if others := {m.owner_id for m in media if isinstance(m, MediaRow) and m.owner is None}:
        owners = User.objects.in_bulk(others)
        for m in media:
            if isinstance(m, MediaRow) and m.owner is None:
                m.owner = owners[m.owner_id]
    variants, albums, tags = _relations_sql(connection.alias, len(keys))
    if connection.vendor == "postgresql":
        # One array literal: psycopg converts a statement of more than 50 parameters anew each
        # time (~0.2 ms of CPU for a hundred ids), one of a single parameter once; and one
        # string is sent as it is where a list is dumped element by element (a regex each).
        params = ["{" + ",".join(by_key) + "}"]
    else:
        params = keys
    with connection.cursor() as cursor:
        cursor.execute(variants, params)
        for row in cursor.fetchall():
            by_key[row[0]].variant_list.append(row)
        cursor.execute(albums, params)
        for media_id, album_id, favourites in cursor.fetchall():
            by_key[media_id].album_list.append(AlbumRow(album_id, bool(favourites)))
        cursor.execute(tags, params)
        for media_id, name in cursor.fetchall():
            by_key[media_id].tag_list.append(TagRow(name))
    return media


@functools.lru_cache(maxsize=64)
def _relations_sql(using: str, count: int) -> tuple[str, str, str]:
    """attach_relations' three queries for `count` media ids on database `using`, as the ORM
    writes them for values_list(...).filter(media_id__in=ids) (the same plans, so variants keep
    their order; on PostgreSQL `= ANY(%s::uuid[])` of one array, the plan PostgreSQL makes of IN
    anyway), the media id as text. Written once for each page length."""
    connection = connections[using]
    quote = connection.ops.quote_name

    def column(model, name: str) -> str:
        return f"{quote(model._meta.db_table)}.{quote(model._meta.get_field(name).column)}"

    def media_id(model) -> str:
        return f"CAST({column(model, 'media')} AS TEXT)"

    def table(model) -> str:
        return quote(model._meta.db_table)

    ids = "= ANY(%s::uuid[])" if connection.vendor == "postgresql" else f"IN ({', '.join(['%s'] * count)})"
    in_albums, in_tags = Album.media.through, Media.tags.through
    variant_columns = [media_id(Variant)] + [column(Variant, name) for name in VARIANT_COLUMNS]
    variants = (f"SELECT {', '.join(variant_columns)} FROM {table(Variant)} "
                f"WHERE {column(Variant, 'media')} {ids}")
    albums = (f"SELECT {media_id(in_albums)}, {column(in_albums, 'album')}, {column(Album, 'is_favourites')} "
              f"FROM {table(in_albums)} INNER JOIN {table(Album)} ON ({column(in_albums, 'album')} = "
              f"{column(Album, 'id')}) WHERE {column(in_albums, 'media')} {ids}")
    tags = (f"SELECT {media_id(in_tags)}, {column(Tag, 'name')} FROM {table(in_tags)} INNER JOIN {table(Tag)} "
            f"ON ({column(in_tags, 'tag')} = {column(Tag, 'id')}) WHERE {column(in_tags, 'media')} {ids}")
    return variants, albums, tags


class WithRelations:
    """For a viewset whose serializer is MediaSerializer: pages and single objects come with
    their relations attached (attach_relations); a page's media are MediaRows."""

    def paginate_queryset(self, queryset):
        # A view reading its pages itself (page_rows) does not need them as a values_list.
        rows = queryset if hasattr(self, "page_rows") else as_rows(queryset)
        return attach_relations(super().paginate_queryset(rows), owner=self.request.user)

    def get_object(self):
        return attach_relations([super().get_object()], owner=self.request.user)[0]


@extend_schema_view(
    list=extend_schema(parameters=[MediaListQuerySerializer], summary="The library, newest first"),
    retrieve=extend_schema(summary="One media"),
    destroy=extend_schema(summary="Move a media to the trash", responses={204: None}),
)
class MediaViewSet(WithRelations, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                   viewsets.GenericViewSet):
    serializer_class = MediaSerializer
    pagination_class = KeysetPagination
    renderer_classes = [FastJSONRenderer]

    def get_queryset(self):
        # The one visibility rule, for every action: list, retrieve, edit, delete, favourite, rotate-token.
        # The owner is the caller (visible_to): attach_relations sets it, no join per media.
        qs = Media.objects.visible_to(self.request.user)
        if self.action == "list":
            for name, value in list_filters(self._list_query()):
                qs = qs.filter(**{name: value})
        return qs

    def _list_query(self) -> dict:
        """The list's validated query parameters (MediaListQuerySerializer; 400 otherwise)."""
        if not hasattr(self, "filters"):
            params = self.request.query_params
            if not any(name in params for name in LIST_FILTER_PARAMS):
                # No filter asked: nothing to validate (a page, a cursor: the paginator's).
                self.filters = {}
                return self.filters
            query = MediaListQuerySerializer(data=params)
            query.is_valid(raise_exception=True)
            self.filters = query.validated_data
        return self.filters

    def list(self, request, *args, **kwargs):
        """ListModelMixin.list without its queryset built up front: the page and its count are
        read by compiled queries (page_rows, count_for), which build get_queryset's only when
        they cannot be (~0.4 ms a page otherwise)."""
        self._list_query()
        page = self.paginate_queryset(None)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def page_rows(self, queryset: QuerySet | None, direction: str, position: tuple[datetime, uuid.UUID] | None,
                  limit: int) -> list[MediaRow]:
        """The list's page (KeysetPagination): the query keyset_page makes of get_queryset's,
        compiled once per shape (page_query) and run with this caller's values, or (when it
        cannot be compiled) that queryset's own."""
        filters = list_filters(self.filters)
        using = router.db_for_read(Media)
        query = page_query(using, tuple(name for name, _ in filters), direction, position is not None, limit)
        if query is None:
            queryset = self.get_queryset() if queryset is None else queryset
            return list(keyset_page(as_rows(queryset), ("taken_at", "id"), direction, position, limit))
        arguments = (self.request.user.pk, *(value for _, value in filters), *(position or ()))
        return media_rows(connections[using], query.compiler, query.sql, query.params(*arguments))

    def _reloaded(self, pk) -> Media:
        """The media as it is now, with its relations, for the JSON after a write."""
        return attach_relations([self.get_queryset().get(pk=pk)], owner=self.request.user)[0]

    def count_for(self, queryset: QuerySet | None) -> int:
        """The list's total: the counters for the library, one kind or one timeline bucket (no
        scan); a lookup by SHA-256 or a bucket of one kind counts its rows through an index
        (get_queryset's when `queryset` is None)."""
        if self.filters.get("sha256") or (self.filters.get("bucket") and self.filters.get("kind")):
            return (self.get_queryset() if queryset is None else queryset).count()
        if bucket := self.filters.get("bucket"):
            size, first = bucket
            last = first if size == "day" else (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
            days = TimelineDay.objects.filter(owner=self.request.user, day__gte=first, day__lte=last)
            return days.aggregate(n=Sum("count"))["n"] or 0
        kind = self.filters.get("kind")
        using = router.db_for_read(KindUsage)
        query = count_query(using, kind is not None)
        if query is None or not self.request.user.is_authenticated:
            return Media.objects.visible_count(self.request.user, kind=kind)
        with connections[using].cursor() as cursor:
            return sum(count for (count,) in query.rows(cursor, self.request.user.pk, *([kind] if kind else [])))

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
        media = self._reloaded(result.media.pk)
        return Response(MediaSerializer(media).data,
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)

    @extend_schema(summary="Edit name, description, date and position", request=MediaEditSerializer,
                   responses=MediaSerializer)
    def partial_update(self, request, pk=None):
        """Edit name, description, taken_at (with its offset) and the position."""
        media = self.get_object()
        edit = MediaEditSerializer(data=request.data)
        edit.is_valid(raise_exception=True)
        changes = dict(edit.validated_data)
        if "latitude" in changes:
            lat, lon = changes.pop("latitude"), changes.pop("longitude")
            changes["location"] = None if lat is None else (lat, lon)
        media_edit(media=media, **changes)
        return Response(MediaSerializer(self._reloaded(media.pk)).data)

    def perform_destroy(self, instance: Media) -> None:
        media_trash(media=instance)  # to the trash; the purge deletes it for good later

    @extend_schema(summary="Favourite (POST) or not (DELETE)", request=None, responses=MediaSerializer)
    @action(detail=True, methods=["post", "delete"])
    def favourite(self, request, pk=None):
        """POST: into the Favourites album; DELETE: out of it. Both idempotent; the media JSON."""
        media = self.get_object()
        media_favourite(media=media, favourite=request.method == "POST")
        return Response(MediaSerializer(self._reloaded(media.pk)).data)

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
