"""The database backend: search.models' tables, PostgreSQL full-text search or SQLite FTS5.

A query is one base set of the owner's entries (filters on indexed columns, words through
the full-text index), then its exact count, one GROUP BY per facet over it, and a page
(keyset on (taken_at, id) for the time sorts, offset for relevance).

Words: every word of the query must match (AND); a word matches a whole word of the
document or one of its synonyms (month and day names), the last word also as a prefix
(what one types), and a word of three or more characters also anywhere inside the file
name (trigram indexes: "0704" finds IMG_20190704_181503.jpg).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Iterable

from django.db import connection, transaction
from django.db.models import BigIntegerField, ExpressionWrapper, F, Q, QuerySet
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
SORT_MATCHES_BELOW = 10_000  # see DatabaseBackend.search


def _alternatives(term: str) -> list[str]:
    return [term, *SYNONYMS.get(term, [])]


def _word_clause(term: str, *, prefix: bool) -> tuple[str, list[Any]]:
    """SQL matching one query word, and its parameters, for the database in use."""
    alts = _alternatives(term)
    if connection.vendor == "postgresql":
        tsquery = " | ".join(f"{a}:*" if prefix and a == term else a for a in alts)
        sql, params = f"{TABLE}.document @@ to_tsquery('simple'::regconfig, %s)", [tsquery]
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
            sql, term_params = _word_clause(term, prefix=i == len(terms) - 1)
            where.append(sql)
            params.extend(term_params)
        if where:
            qs = qs.extra(where=where, params=params)
        return qs

    def count_and_facets(self, base: QuerySet, names: Iterable[str]) -> tuple[int, dict[str, dict[str, int]]]:
        """The exact count and each facet's counts in one statement: the matching entries once
        (a materialized CTE), then one GROUP BY per facet over them (tags and albums joined by
        their entry index), at most MAX_FACET_VALUES values each, largest counts first."""
        names = list(names)
        if not names:
            return base.count(), {}
        columns = sorted({COLUMNS[n] for n in names if n in COLUMNS}
                         | {"tag_names" for n in names if n == "tag"} | {"album_ids" for n in names if n == "album"})
        inner, params = base.values_list("id", *columns).query.sql_with_params()
        parts = ["SELECT '' AS facet, NULL AS value, COUNT(*) AS n FROM b"]
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
            parts.append(f"SELECT '{name}' AS facet, CAST(g.raw AS TEXT) AS value, g.n FROM "
                         f"(SELECT * FROM ({grouped}) h ORDER BY n DESC, raw LIMIT {MAX_FACET_VALUES}) g")
        sql = f"WITH b AS MATERIALIZED ({inner}) " + " UNION ALL ".join(parts)
        count, facets = 0, {name: {} for name in names}
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for facet, value, n in cursor.fetchall():
                if facet:
                    facets[facet][value] = n
                else:
                    count = n
        return count, facets

    def search(self, query: SearchQuery, *, owner_id: str) -> SearchResult:
        base = self.base(query, owner_id=owner_id)
        count, facets = self.count_and_facets(base, query.facets)
        size = query.page_size
        if query.sort == "relevance":
            offset = query.cursor.offset if query.cursor else 0
            rows = list(base.annotate(rank=_rank(query.terms)).order_by("-rank", "-taken_at_us", "-media_id")
                        .values_list("media_id", flat=True)[offset:offset + size + 1])
            more = len(rows) > size
            ids = [str(r) for r in rows[:size]]
            next_cursor = Cursor(sort="relevance", offset=offset + size) if more else None
            return SearchResult(ids=ids, count=count, facets=facets, next_cursor=next_cursor)
        newest_first = query.sort == "-taken_at"
        page = base
        if query.cursor is not None:
            t, last = query.cursor.taken_at_us, query.cursor.media_id
            page = page.filter(Q(taken_at_us__lt=t) | Q(taken_at_us=t, media_id__lt=last) if newest_first
                               else Q(taken_at_us__gt=t) | Q(taken_at_us=t, media_id__gt=last))
        when: Any = F("taken_at_us")
        if count <= SORT_MATCHES_BELOW:
            # Few matches: read them all (through the word and filter indexes) and sort them.
            # Walking the time index instead can pass a great many rows that do not match when
            # the matches sit far from its start ("january" in a year read from December).
            # With many matches the walk finds a page soon; the count decides.
            when = ExpressionWrapper(F("taken_at_us") + 0, output_field=BigIntegerField())
        order = (when.desc(), F("media_id").desc()) if newest_first else (when.asc(), F("media_id").asc())
        rows = list(page.order_by(*order).values_list("media_id", "taken_at_us")[:size + 1])
        more = len(rows) > size
        rows = rows[:size]
        next_cursor = (Cursor(sort=query.sort, taken_at_us=rows[-1][1], media_id=str(rows[-1][0]))
                       if more else None)
        return SearchResult(ids=[str(r[0]) for r in rows], count=count, facets=facets, next_cursor=next_cursor)

    def health(self) -> dict[str, Any]:
        return {"backend": self.name}
