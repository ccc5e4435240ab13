"""The search backend behind one setting, SEARCH_BACKEND: the database (search.db) or
Meilisearch (search.meili). Both take the same documents and answer the same queries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Protocol

from django.conf import settings

from search.db import DatabaseBackend
from search.documents import Document
from search.meili import MeilisearchBackend
from search.query import SearchQuery, SearchResult


class SearchBackend(Protocol):
    name: str

    def setup(self) -> dict[str, Any]:
        """Create the index and apply its settings; running it again changes nothing."""

    def index(self, documents: Iterable[Document]) -> int:
        """Add or replace documents (batched); returns how many. Raises when not stored."""

    def remove(self, media_ids: Iterable[str]) -> None:
        """Remove these media from the index (unknown ids are fine)."""

    def prune(self, *, owner_id: str | None, before: datetime) -> int:
        """Remove documents (of one owner) indexed before `before`: what a reindex did not see."""

    def search(self, query: SearchQuery, *, owner_id: str) -> SearchResult:
        """The owner's matching media ids (one page), the exact count and the facet counts."""

    def health(self) -> dict[str, Any]:
        """Raise when the backend cannot answer; else a small dict describing it."""


def get_backend() -> SearchBackend:
    if settings.SEARCH_BACKEND == "meilisearch":
        return MeilisearchBackend(settings.MEILISEARCH_URL, settings.MEILISEARCH_API_KEY,
                                  settings.MEILISEARCH_INDEX)
    return DatabaseBackend()
