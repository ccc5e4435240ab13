"""The database backend: search.models' tables, PostgreSQL full-text search or SQLite FTS5.

A query is one base set of the owner's entries (filters on indexed columns, words through
the full-text index), then one statement for its exact count, one GROUP BY per facet over
it and, for the time sorts, its page (keyset on (taken_at, id)); relevance pages (an
offset) are a second statement.

Words: every word of the query must match (AND); a word matches a whole word of the
document or one of its synonyms (month and day names), the last word also as a prefix
(what one types), and a word of three or more characters also anywhere inside the file
name (trigram indexes: "0704" finds IMG_20190704_181503.jpg). On PostgreSQL the prefix is
searched as the owner's whole words that start with it (search_word), when they are few.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from search.documents import SYNONYMS, Document, fold, searchable_words
from search.models import SearchAlbum, SearchEntry, SearchTag
from search.query import MAX_FACET_VALUES, Cursor, SearchQuery, SearchResult

EARTH_KM = 6371.0
TABLE = SearchEntry._meta.db_table
# Facet name -> column of search_searchentry (tag and album come from their side tables).
COLUMNS = {"kind": "kind", "year": "year", "month": "month", "day": "day", "country": "country",
           "city": "city", "camera": "camera", "favourite": "favourite"}
BATCH = 500
PREFIX_WORDS = 64  # see _prefix_words
WORK_MEM = "32MB"  # see search


def _alternatives(term: str) -> list[str]:
    return [term, *SYNONYMS.get(term, [])]


def _prefix_words(owner_id: str, term: str) -> list[str] | None:
    """PostgreSQL: the owner's words that start with `term` (search_word, migration 0003), or
    None when there are more than PREFIX_WORDS (then the GIN prefix match is as cheap) or the
    term is not plain ASCII letters and digits (the one case where the text search parser
    is known to read it as one lowercase token, as the prefix match would)."""
    if not (term.isascii() and term.isalnum() and term == term.lower()):
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT word FROM search_word WHERE owner_id = %s AND word LIKE %s ORDER BY word LIMIT %s",
                       [owner_id, f"{term}%", PREFIX_WORDS + 1])
        found = [row[0] for row in cursor.fetchall()]
    return found if len(found) <= PREFIX_WORDS else None


def _tsquery_literal(lexemes: list[str]) -> str:
    """Lexemes as tsquery input (quoted, taken as they are, no parsing), OR-ed."""
    return " | ".join("'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in lexemes)


def _word_clause(term: str, *, prefix: bool, owner_id: str) -> tuple[str, list[Any]]:
    """SQL matching one query word, and its parameters, for the database in use."""
    alts = _alternatives(term)
    if connection.vendor == "postgresql":
        expanded = _prefix_words(owner_id, term) if prefix else None
        if expanded is None:
            tsquery = " | ".join(f"{a}:*" if prefix and a == term else a for a in alts)
            sql, params = f"{TABLE}.document @@ to_tsquery('simple'::regconfig, %s)", [tsquery]
        else:
            # The prefix as the whole words it stands for (the word itself among them when it is
            # one), exact GIN lookups; the synonyms as before.
            parts, params = [], []
            if len(alts) > 1:
                parts.append("to_tsquery('simple'::regconfig, %s)")
                params.append(" | ".join(alts[1:]))
            if expanded:
                parts.append("%s::tsquery")
                params.append(_tsquery_literal(expanded))
            sql = f"{TABLE}.document @@ ({' || '.join(parts)})" if parts else "FALSE"
        if len(term) >= 3:
            sql, params = f"({sql} OR {TABLE}.name LIKE %s)", [*params, f"%{term}%"]
        return sql, params
    match = " OR ".join(f'"{a}"*' if prefix and a == term else f'"{a}"' for a in alts)
    sql = f"{TABLE}.id IN (SELECT rowid FROM search_words_fts WHERE search_words_fts MATCH %s)"
    params: list[Any] = [match]
    if len(term) >= 3:
        sql = f"({sql} OR {TABLE}.id IN (SELECT rowid FROM search_name_fts WHERE search_name_fts MATCH %s))"
        params.append(f'"{term}"')
    return sql, params


def _rank(terms: list[str]) -> RawSQL:
    """Relevance, higher is better: ts_rank on PostgreSQL, -bm25 on SQLite (0 for a row that
    matched through its name only)."""
    alts = [a for t in terms for a in _alternatives(t)]
    if connection.vendor == "postgresql":
        tsquery = " | ".join(f"{a}:*" if a == terms[-1] else a for a in alts)
        return RawSQL(f"ts_rank({TABLE}.document, to_tsquery('simple'::regconfig, %s))", [tsquery])
    match = " OR ".join(f'"{a}"*' if a == terms[-1] else f'"{a}"' for a in alts)
    return RawSQL(f"COALESCE((SELECT -bm25(search_words_fts) FROM search_words_fts WHERE search_words_fts "
                  f"MATCH %s AND rowid = {TABLE}.id), 0)", [match])


def _near_clause(lat: float, lon: float, km: float) -> tuple[Q, str, list[Any]]:
    """A bounding box on the indexed columns, and the haversine distance for the exact cut."""
    dlat = math.degrees(km / EARTH_KM)
    box = Q(latitude__gte=lat - dlat, latitude__lte=lat + dlat)
    if abs(lat) + dlat < 89:
        dlon = math.degrees(km / (EARTH_KM * math.cos(math.radians(lat))))
        if lon - dlon >= -180 and lon + dlon <= 180:  # no box across the antimeridian
            box &= Q(longitude__gte=lon - dlon, longitude__lte=lon + dlon)
    sql = (f"2 * {EARTH_KM} * ASIN(SQRT(POWER(SIN((RADIANS({TABLE}.latitude) - %s) / 2), 2) + "
           f"COS(RADIANS({TABLE}.latitude)) * %s * POWER(SIN((RADIANS({TABLE}.longitude) - %s) / 2), 2))) <= %s")
    return box, sql, [math.radians(lat), math.cos(math.radians(lat)), math.radians(lon), km]


class DatabaseBackend:
    name = "db"

    # --- Writing ---------------------------------------------------------------------------
    def setup(self) -> dict[str, Any]:
        """Nothing to configure: migrations made the tables and indexes."""
        return {"backend": self.name}

    def index(self, documents: Iterable[Document]) -> int:
        """Add or replace these documents, BATCH at a time; returns how many."""
        docs = list(documents)
        now = timezone.now()
        for start in range(0, len(docs), BATCH):
            self._write(docs[start:start + BATCH], now)
        return len(docs)

    @transaction.atomic
    def _write(self, docs: list[Document], now: datetime) -> None:
        entries = [SearchEntry(
            media_id=d["id"], owner_id=d["owner"], kind=d["kind"], content_type=d["content_type"][:127],
            name=fold(d["name"])[:255], words=" ".join(searchable_words(d)),
            taken_at=datetime.fromtimestamp(d["taken_at_us"] / 1_000_000, tz=UTC),
            taken_at_us=d["taken_at_us"], date=d["date"], year=d["year"], month=d["month"], day=d["day"],
            weekday=d["weekday"], country=d["country"][:200], region=d["region"][:200], city=d["city"][:200],
            camera=d["camera"][:200], favourite=d["favourite"], tag_names=[t[:100] for t in d["tags"]],
            album_ids=list(d["albums"]), latitude=d.get("_geo", {}).get("lat"),
            longitude=d.get("_geo", {}).get("lng"), indexed_at=now,
        ) for d in docs]
        fields = [f.name for f in SearchEntry._meta.concrete_fields if f.name not in ("id", "media")]
        SearchEntry.objects.bulk_create(entries, update_conflicts=True, unique_fields=["media"], update_fields=fields)
        ids = dict(SearchEntry.objects.filter(media_id__in=[d["id"] for d in docs]).values_list("media_id", "id"))
        entry_of = {str(media_id): entry_id for media_id, entry_id in ids.items()}
        SearchTag.objects.filter(entry_id__in=entry_of.values()).delete()
        SearchAlbum.objects.filter(entry_id__in=entry_of.values()).delete()
        SearchTag.objects.bulk_create([SearchTag(entry_id=entry_of[d["id"]], owner_id=d["owner"], name=t[:100],
                                                 kind=d["kind"], year=d["year"])
                                       for d in docs for t in d["tags"]])
        SearchAlbum.objects.bulk_create([SearchAlbum(entry_id=entry_of[d["id"]], owner_id=d["owner"], album_id=a)
                                         for d in docs for a in d["albums"]])
        if connection.vendor == "postgresql":
            # The documents' words, for prefix queries (_prefix_words); in word order, so two
            # writers adding the same new words wait for each other instead of deadlocking.
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO search_word (owner_id, word) SELECT DISTINCT owner_id, w FROM "
                               f"{TABLE}, unnest(tsvector_to_array(document)) AS w WHERE id = ANY(%s) "
                               "ORDER BY owner_id, w ON CONFLICT DO NOTHING", [list(entry_of.values())])

    def remove(self, media_ids: Iterable[str]) -> None:
        ids = list(media_ids)
        for start in range(0, len(ids), BATCH):
            SearchEntry.objects.filter(media_id__in=ids[start:start + BATCH]).delete()

    def prune(self, *, owner_id: str | None, before: datetime) -> int:
        """Remove entries (of one owner) not written since `before`: what a reindex did not see."""
        stale = SearchEntry.objects.filter(indexed_at__lt=before)
        if owner_id is not None:
            stale = stale.filter(owner_id=owner_id)
        return stale.delete()[1].get(SearchEntry._meta.label, 0)

    # --- Reading ---------------------------------------------------------------------------
    def base(self, query: SearchQuery, *, owner_id: str) -> QuerySet:
        """The owner's entries that match the words and filters, unordered."""
        qs = SearchEntry.objects.filter(owner_id=owner_id)
        for name, values in query.filters.items():
            if name == "tag":
                tagged = SearchTag.objects.filter(owner_id=owner_id, name__in=values)
                # The tag rows repeat their entry's kind and year: "kind + year + tag" is one range
                # of the tag index (the entries are still asked too, which keeps pages ordered).
                for column in ("kind", "year"):
                    if column in query.filters:
                        tagged = tagged.filter(**{f"{column}__in": query.filters[column]})
                qs = qs.filter(id__in=tagged.values("entry_id"))
            elif name == "album":
                qs = qs.filter(id__in=SearchAlbum.objects.filter(owner_id=owner_id, album_id__in=values)
                               .values("entry_id"))
            else:
                qs = qs.filter(**{f"{COLUMNS[name]}__in": values})
        if query.date_from is not None:
            qs = qs.filter(date__gte=query.date_from)
        if query.date_to is not None:
            qs = qs.filter(date__lte=query.date_to)
        where: list[str] = []
        params: list[Any] = []
        if query.near is not None:
            box, sql, near_params = _near_clause(*query.near)
            qs = qs.filter(box)
            where.append(sql)
            params.extend(near_params)
        terms = query.terms
        for i, term in enumerate(terms):
            sql, term_params = _word_clause(term, prefix=i == len(terms) - 1, owner_id=owner_id)
            where.append(sql)
            params.extend(term_params)
        if where:
            qs = qs.extra(where=where, params=params)
        return qs

    def count_facets_page(self, base: QuerySet, query: SearchQuery) -> tuple[
            int, dict[str, dict[str, int]], list[tuple[Any, int]] | None]:
        """The exact count, each facet's counts and, for the time sorts, the page's rows
        (media_id, taken_at_us) in one statement: the matching entries are read once (a
        materialized CTE), then one GROUP BY per facet over them (tags and albums from their JSON
        lists), at most MAX_FACET_VALUES values each, largest counts first, and the page is a
        top-N sort of the same rows. Relevance pages are read separately (None)."""
        names = list(query.facets)
        with_page = query.sort != "relevance"
        columns = sorted({COLUMNS[n] for n in names if n in COLUMNS}
                         | {"tag_names" for n in names if n == "tag"} | {"album_ids" for n in names if n == "album"}
                         | ({"media_id", "taken_at_us"} if with_page else set()))
        inner, params = base.values_list("id", *columns).query.sql_with_params()
        params = list(params)
        parts = ["SELECT '' AS facet, CAST(NULL AS TEXT) AS value, COUNT(*) AS n, CAST(NULL AS TEXT) AS media_id FROM b"]
        for name in names:
            if name in ("tag", "album"):
                column = "tag_names" if name == "tag" else "album_ids"
                if connection.vendor == "postgresql":
                    grouped = (f"SELECT v AS raw, COUNT(*) AS n FROM b, jsonb_array_elements_text(b.{column}) AS v "
                               "GROUP BY v")
                else:
                    grouped = f"SELECT j.value AS raw, COUNT(*) AS n FROM b, json_each(b.{column}) AS j GROUP BY j.value"
            else:
                column = COLUMNS[name]
                where = f" WHERE b.{column} <> ''" if name in ("country", "city", "camera") else ""
                grouped = f"SELECT b.{column} AS raw, COUNT(*) AS n FROM b{where} GROUP BY b.{column}"
            parts.append(f"SELECT '{name}' AS facet, CAST(g.raw AS TEXT) AS value, g.n, CAST(NULL AS TEXT) FROM "
                         f"(SELECT * FROM ({grouped}) h ORDER BY n DESC, raw LIMIT {MAX_FACET_VALUES}) g")
        if with_page:
            newest_first = query.sort == "-taken_at"
            where = ""
            if query.cursor is not None:
                op = "<" if newest_first else ">"
                where = f" WHERE (b.taken_at_us {op} %s OR (b.taken_at_us = %s AND b.media_id {op} %s))"
                media_field = SearchEntry._meta.get_field("media").target_field
                last = media_field.get_db_prep_value(uuid.UUID(query.cursor.media_id), connection)
                params += [query.cursor.taken_at_us, query.cursor.taken_at_us, last]
            direction = "DESC" if newest_first else "ASC"
            parts.append(f"SELECT '~page' AS facet, CAST(NULL AS TEXT), p.taken_at_us AS n, CAST(p.media_id AS TEXT) FROM "
                         f"(SELECT b.taken_at_us, b.media_id FROM b{where} ORDER BY b.taken_at_us {direction}, "
                         f"b.media_id {direction} LIMIT {query.page_size + 1}) p")
        sql = f"WITH b AS MATERIALIZED ({inner}) " + " UNION ALL ".join(parts)
        count, facets, page = 0, {name: {} for name in names}, []
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        for facet, value, n, media_id in rows:
            if facet == "~page":
                page.append((media_id, n))
            elif facet:
                facets[facet][value] = n
            else:
                count = n
        # UNION ALL keeps no order between its parts: the page's rows are sorted here again.
        page.sort(key=lambda row: (row[1], str(row[0])), reverse=query.sort == "-taken_at")
        return count, facets, page if with_page else None

    def search(self, query: SearchQuery, *, owner_id: str) -> SearchResult:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Bitmaps of a common word's matches stay exact (with the default 4 MB, "canon"
                # went lossy on 24,000 heap pages and rechecked every row of them) and the
                # matching rows stay in memory; no JIT: compiling took ~30 ms of queries that run
                # for less.
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'; SET LOCAL jit = off")
            return self._search(query, owner_id=owner_id)

    def _search(self, query: SearchQuery, *, owner_id: str) -> SearchResult:
        base = self.base(query, owner_id=owner_id)
        count, facets, page = self.count_facets_page(base, query)
        size = query.page_size
        if page is None:  # relevance
            offset = query.cursor.offset if query.cursor else 0
            rows = list(base.annotate(rank=_rank(query.terms)).order_by("-rank", "-taken_at_us", "-media_id")
                        .values_list("media_id", flat=True)[offset:offset + size + 1])
            more = len(rows) > size
            ids = [str(r) for r in rows[:size]]
            next_cursor = Cursor(sort="relevance", offset=offset + size) if more else None
            return SearchResult(ids=ids, count=count, facets=facets, next_cursor=next_cursor)
        more = len(page) > size
        rows = [(str(uuid.UUID(str(media_id))), taken_at_us) for media_id, taken_at_us in page[:size]]
        next_cursor = Cursor(sort=query.sort, taken_at_us=rows[-1][1], media_id=rows[-1][0]) if more else None
        return SearchResult(ids=[r[0] for r in rows], count=count, facets=facets, next_cursor=next_cursor)

    def health(self) -> dict[str, Any]:
        return {"backend": self.name}
