"""The Meilisearch backend (the official `meilisearch` client).

What is sent is built by pure functions (settings, filters, requests, answers), tested
without a server. The API key (the master key, or an admin key) stays on the server: every
query is built here and always filters on the owner; no search key is handed out.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

from search.documents import SYNONYMS, Document, id_key
from search.query import MAX_FACET_VALUES, Cursor, SearchQuery, SearchResult, SearchUnavailable

# Facet and filter names of the API -> attributes of the document.
ATTRIBUTES = {"kind": "kind", "year": "year", "month": "month", "day": "day", "country": "country",
              "city": "city", "camera": "camera", "tag": "tags", "album": "albums", "favourite": "favourite"}
# Searched, in order of importance (the same words the database backend matches).
SEARCHABLE = ["name_tokens", "extension", "tags", "album_titles", "description", "city", "region", "country",
              "camera", "lens", "month_name", "weekday_name", "year", "kind"]
FILTERABLE = sorted({"id", "owner", "date", "taken_at", "taken_at_us", "id_key", "indexed_at", "_geo",
                     *ATTRIBUTES.values()})
SORTABLE = ["id_key", "taken_at", "taken_at_us"]
# Counts must be exact (the API's `count`): Meilisearch counts at most maxTotalHits matches.
MAX_TOTAL_HITS = 100_000_000
BATCH = 1000
TASK_TIMEOUT_MS = 60_000


def index_settings() -> dict[str, Any]:
    """The index's settings; applying them again changes nothing (search_setup)."""
    return {
        "searchableAttributes": SEARCHABLE,
        "filterableAttributes": FILTERABLE,
        "sortableAttributes": SORTABLE,
        "displayedAttributes": ["id", "taken_at_us", "id_key"],  # results are read from the database
        # "sort" first: a time-sorted search is strictly by time; without a sort it does nothing.
        "rankingRules": ["sort", "words", "typo", "proximity", "attribute", "exactness"],
        "synonyms": SYNONYMS,
        "typoTolerance": {"enabled": True, "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9},
                          # 20190704 is not 20190705: numbers in names are exact.
                          "disableOnNumbers": True},
        "faceting": {"maxValuesPerFacet": MAX_FACET_VALUES, "sortFacetValuesBy": {"*": "count"}},
        "pagination": {"maxTotalHits": MAX_TOTAL_HITS},
    }


def meili_document(doc: Document, *, indexed_at: float) -> dict[str, Any]:
    """The document as Meilisearch stores it: empty texts left out (no empty facet value)."""
    body = {k: v for k, v in doc.items() if v != ""}
    body["indexed_at"] = indexed_at
    return body


def quote(value: Any) -> str:
    """A filter value: numbers and booleans as they are, strings double-quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def base_filter(query: SearchQuery, *, owner_id: str) -> list[str]:
    """Conditions that all hold (AND); values of one name are IN (OR). The owner is always first."""
    clauses = [f"owner = {quote(str(owner_id))}"]
    for name, values in query.filters.items():
        attribute = ATTRIBUTES[name]
        if len(values) == 1:
            clauses.append(f"{attribute} = {quote(values[0])}")
        else:
            clauses.append(f"{attribute} IN [{', '.join(quote(v) for v in values)}]")
    if query.date_from is not None:
        clauses.append(f"date >= {query.date_from}")
    if query.date_to is not None:
        clauses.append(f"date <= {query.date_to}")
    if query.near is not None:
        lat, lon, km = query.near
        clauses.append(f"_geoRadius({lat!r}, {lon!r}, {round(km * 1000)})")
    return clauses


def _keyset(query: SearchQuery) -> str | None:
    cursor = query.cursor
    if cursor is None or query.sort == "relevance":
        return None
    op = "<" if query.sort == "-taken_at" else ">"
    t, k = cursor.taken_at_us, id_key(cursor.media_id)
    return f"(taken_at_us {op} {t} OR (taken_at_us = {t} AND id_key {op} {k}))"


def search_requests(query: SearchQuery, *, owner_id: str, index_uid: str) -> list[dict[str, Any]]:
    """Two searches for one multi-search call: the exact count and facets, then the page."""
    text = " ".join(query.terms)
    where = base_filter(query, owner_id=owner_id)
    counting: dict[str, Any] = {"indexUid": index_uid, "q": text, "filter": where, "matchingStrategy": "all",
                                "page": 1, "hitsPerPage": 0}
    if query.facets:
        counting["facets"] = [ATTRIBUTES[f] for f in query.facets]
    page: dict[str, Any] = {"indexUid": index_uid, "q": text, "matchingStrategy": "all",
                            "attributesToRetrieve": ["id", "taken_at_us"], "limit": query.page_size + 1}
    if query.sort == "relevance":
        page["offset"] = query.cursor.offset if query.cursor else 0
        page["filter"] = where
    else:
        direction = "desc" if query.sort == "-taken_at" else "asc"
        page["sort"] = [f"taken_at_us:{direction}", f"id_key:{direction}"]
        keyset = _keyset(query)
        page["filter"] = where + ([keyset] if keyset else [])
    return [counting, page]


def result_from(responses: list[dict[str, Any]], query: SearchQuery) -> SearchResult:
    """A SearchResult from the answers to search_requests (same order)."""
    counting, page = responses
    distribution = counting.get("facetDistribution") or {}
    facets = {name: {str(k): int(v) for k, v in distribution.get(ATTRIBUTES[name], {}).items()}
              for name in query.facets}
    hits = page.get("hits", [])
    more = len(hits) > query.page_size
    hits = hits[:query.page_size]
    next_cursor = None
    if more and query.sort == "relevance":
        next_cursor = Cursor(sort="relevance", offset=(query.cursor.offset if query.cursor else 0) + query.page_size)
    elif more:
        next_cursor = Cursor(sort=query.sort, taken_at_us=int(hits[-1]["taken_at_us"]), media_id=hits[-1]["id"])
    return SearchResult(ids=[h["id"] for h in hits], count=int(counting.get("totalHits", 0)), facets=facets,
                        next_cursor=next_cursor)


class MeilisearchBackend:
    name = "meilisearch"

    def __init__(self, url: str, api_key: str, index_uid: str) -> None:
        import meilisearch

        self.url = url.rstrip("/")
        self.index_uid = index_uid
        self.client = meilisearch.Client(self.url, api_key or None, timeout=10)

    @property
    def index_(self):
        return self.client.index(self.index_uid)

    def _wait(self, task_uid: int) -> None:
        task = self.client.wait_for_task(task_uid, timeout_in_ms=TASK_TIMEOUT_MS)
        if task.status != "succeeded":
            raise SearchUnavailable(f"meilisearch task {task_uid} {task.status}: {json.dumps(task.error)[:500]}")

    def setup(self) -> dict[str, Any]:
        """Create the index (primary key `id`) if missing and apply index_settings()."""
        from meilisearch.errors import MeilisearchApiError

        try:
            self.client.get_index(self.index_uid)
        except MeilisearchApiError as exc:
            if exc.code != "index_not_found":
                raise
            self._wait(self.client.create_index(self.index_uid, {"primaryKey": "id"}).task_uid)
        self._wait(self.index_.update_settings(index_settings()).task_uid)
        return {"backend": self.name, "index": self.index_uid}

    def index(self, documents: Iterable[Document]) -> int:
        now = datetime.now().timestamp()
        docs = [meili_document(d, indexed_at=now) for d in documents]
        for start in range(0, len(docs), BATCH):
            self._wait(self.index_.add_documents(docs[start:start + BATCH], primary_key="id").task_uid)
        return len(docs)

    def remove(self, media_ids: Iterable[str]) -> None:
        ids = list(media_ids)
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            self._wait(self.index_.delete_documents(filter=f"id IN [{', '.join(quote(i) for i in chunk)}]").task_uid)

    def prune(self, *, owner_id: str | None, before: datetime) -> int:
        where = f"indexed_at < {before.timestamp()!r}"
        if owner_id is not None:
            where = f"owner = {quote(str(owner_id))} AND {where}"
        self._wait(self.index_.delete_documents(filter=where).task_uid)
        return 0  # Meilisearch does not say how many

    def search(self, query: SearchQuery, *, owner_id: str) -> SearchResult:
        from meilisearch.errors import MeilisearchError

        try:
            answer = self.client.multi_search(search_requests(query, owner_id=owner_id, index_uid=self.index_uid))
        except MeilisearchError as exc:
            raise SearchUnavailable(f"search is unavailable: {exc}"[:300]) from exc
        return result_from(answer["results"], query)

    def health(self) -> dict[str, Any]:
        if self.client.health().get("status") != "available":
            raise SearchUnavailable("meilisearch is not available")
        pending = self.client.get_tasks({"indexUids": [self.index_uid], "statuses": ["enqueued", "processing"],
                                         "limit": 1})
        return {"backend": self.name, "index": self.index_uid, "pending_tasks": pending.total}
