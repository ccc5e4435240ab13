"""Keyset pagination of the timeline over (taken_at, id), newest first.

A cursor names the last row a page showed, so the next page is one index range scan from
there whatever the depth, and rows sharing a taken_at (a bulk import of undated files) are
ordered by id: no duplicates, no gaps, no OFFSET. `count` comes from the counters
(Media.objects.visible_count) when the list is the whole library or one kind, so no page
costs a scan of the library.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from gallery.exceptions import InvalidInput
from media_api.schema import page_of

CURSOR_PARAM = "cursor"
PAGE_SIZE_PARAM = "page_size"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


def encode_cursor(direction: str, taken_at: datetime, media_id: uuid.UUID) -> str:
    raw = f"{direction}|{taken_at.isoformat()}|{media_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[str, datetime, uuid.UUID]:
    """(direction, taken_at, id) of a cursor; InvalidInput (400) for anything else."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        direction, when, media_id = raw.split("|")
        taken_at = parse_datetime(when)
        if direction not in ("n", "p") or taken_at is None or taken_at.tzinfo is None:
            raise ValueError(raw)
        return direction, taken_at, uuid.UUID(media_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor: not a cursor this server handed out") from None


def keyset_page(queryset: QuerySet, keys: tuple[str, str], direction: str,
                position: tuple[datetime, uuid.UUID] | None, limit: int) -> QuerySet:
    """The queryset's `limit` rows after `position` (None: from the newest) over the keyset
    fields `keys` (time, id): newest first for direction "n", oldest first for "p"."""
    when, key = keys
    if direction == "n":
        if position is not None:
            # The redundant taken_at bound lets the index seek to the position (SQLite
            # does not for the OR alone: it walks the owner's rows from the newest).
            queryset = queryset.filter(Q((f"{when}__lte", position[0])),
                                       Q((f"{when}__lt", position[0])) | Q((when, position[0]), (f"{key}__lt", position[1])))
        return queryset.order_by(f"-{when}", f"-{key}")[:limit]
    queryset = queryset.filter(Q((f"{when}__gte", position[0])),
                               Q((f"{when}__gt", position[0])) | Q((when, position[0]), (f"{key}__gt", position[1])))
    return queryset.order_by(when, key)[:limit]


class KeysetPagination(BasePagination):
    """Newest first by (taken_at, id); `next`/`previous` links carry keyset cursors."""

    def paginate_queryset(self, queryset: QuerySet, request, view=None) -> list:
        self.request = request
        self.page_size = self._page_size(request)
        # The (time, id) fields the keyset is over: the media's own, or a view's (an album's
        # page walks its AlbumItem rows by their copy of taken_at and their media_id).
        self.keys = getattr(view, "keyset_fields", ("taken_at", "id"))
        self.count = view.count_for(queryset) if view is not None and hasattr(view, "count_for") else queryset.count()
        raw = request.query_params.get(CURSOR_PARAM)
        direction, position = "n", None
        if raw:
            direction, taken_at, media_id = decode_cursor(raw)
            position = (taken_at, media_id)
        # A view may read the page itself (MediaViewSet.page_rows: the same query, compiled once).
        if hasattr(view, "page_rows"):
            rows = view.page_rows(queryset, direction, position, self.page_size + 1)
        else:
            rows = list(keyset_page(queryset, self.keys, direction, position, self.page_size + 1))
        if direction == "n":
            self.has_next, self.has_previous = len(rows) > self.page_size, position is not None
            rows = rows[: self.page_size]
        else:
            self.has_previous, self.has_next = len(rows) > self.page_size, True
            rows = rows[: self.page_size][::-1]
        # The links need the first and last positions only: rows kept here would live as long as
        # the view, which DRF's request and response contexts hold in reference cycles.
        self.edges = (self._position(rows[0]), self._position(rows[-1])) if rows else None
        return rows

    def _position(self, row) -> tuple[datetime, uuid.UUID]:
        """A row's place in the keyset: a model object or a MediaRow (its taken_at and pk), or a
        dict from values() (by the keyset's fields)."""
        when, key = self.keys
        return (row[when], row[key]) if isinstance(row, dict) else (row.taken_at, row.pk)

    def _page_size(self, request) -> int:
        raw = request.query_params.get(PAGE_SIZE_PARAM)
        if raw is None:
            return DEFAULT_PAGE_SIZE
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise InvalidInput(f"page_size: a whole number from 1 to {MAX_PAGE_SIZE}")
        return min(int(raw), MAX_PAGE_SIZE)

    def _link(self, direction: str, position: tuple[datetime, uuid.UUID]) -> str:
        url = self.request.build_absolute_uri()
        return replace_query_param(url, CURSOR_PARAM, encode_cursor(direction, *position))

    def get_next_link(self) -> str | None:
        return self._link("n", self.edges[1]) if self.has_next and self.edges else None

    def get_previous_link(self) -> str | None:
        if not self.has_previous:
            return None
        if not self.edges:  # past the end: back to the first page
            return remove_query_param(self.request.build_absolute_uri(), CURSOR_PARAM)
        return self._link("p", self.edges[0])

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return page_of(schema)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {"name": CURSOR_PARAM, "in": "query", "required": False, "schema": {"type": "string"},
             "description": "a position from a previous page's next or previous link"},
            {"name": PAGE_SIZE_PARAM, "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE}},
        ]

    def get_paginated_response(self, data) -> Response:
        return PageResponse({"count": self.count, "next": self.get_next_link(),
                             "previous": self.get_previous_link(), "results": data})


class PageResponse(Response):
    """A page's Response lets go of its data once sent. DRF's view, request and response refer
    to one another (renderer and parser contexts), so they are freed by the garbage collector,
    not when the request ends; a page of media JSON hanging from them (~2,300 objects, its
    rows' included) made every request pay a collection that walked them all (~2 ms)."""

    def close(self) -> None:
        super().close()
        self.data = self.renderer_context = None


class AlbumKeysetPagination(KeysetPagination):
    """The album list: Favourites first, then the newest (by id), keyset over (is_favourites,
    id) with the same `cursor` and `page_size` parameters and page shape as KeysetPagination.
    `count` is the caller's albums (one COUNT over an index range)."""

    def paginate_queryset(self, queryset: QuerySet, request, view=None) -> list:
        self.request = request
        self.page_size = self._page_size(request)
        self.count = queryset.count()
        raw = request.query_params.get(CURSOR_PARAM)
        direction, position = "n", None
        if raw:
            direction, position = self._decode(raw)
        if direction == "n":
            if position is not None:
                favourites, pk = position
                queryset = queryset.filter(Q(is_favourites__lt=favourites) | Q(is_favourites=favourites, id__lt=pk))
            rows = list(queryset.order_by("-is_favourites", "-id")[: self.page_size + 1])
            self.has_next, self.has_previous = len(rows) > self.page_size, position is not None
            rows = rows[: self.page_size]
        else:
            favourites, pk = position
            queryset = queryset.filter(Q(is_favourites__gt=favourites) | Q(is_favourites=favourites, id__gt=pk))
            rows = list(queryset.order_by("is_favourites", "id")[: self.page_size + 1])
            self.has_previous, self.has_next = len(rows) > self.page_size, True
            rows = rows[: self.page_size][::-1]
        self.edges = (rows[0], rows[-1]) if rows else None  # what its _link reads
        return rows

    @staticmethod
    def _decode(value: str) -> tuple[str, tuple[bool, int]]:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            direction, favourites, pk = raw.split("|")
            if (direction not in ("n", "p") or favourites not in ("0", "1")
                    or not (pk.isascii() and pk.isdigit() and len(pk) <= 18)):
                raise ValueError(raw)
            return direction, (favourites == "1", int(pk))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidInput("cursor: not a cursor this server handed out") from None

    def _link(self, direction: str, album) -> str:
        raw = f"{direction}|{int(album.is_favourites)}|{album.pk}".encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return replace_query_param(self.request.build_absolute_uri(), CURSOR_PARAM, cursor)
