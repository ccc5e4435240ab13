"""Search backends behind one setting (SEARCH_BACKEND): the database, or Meilisearch.

So far only their health is used (/health/); indexing and queries come with the search issue.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Protocol

from django.conf import settings


class SearchBackend(Protocol):
    def health(self) -> dict[str, Any]:
        """Raise when the backend cannot answer; else a small dict describing it."""


class DatabaseBackend:
    def health(self) -> dict[str, Any]:
        return {"backend": "db"}


class MeilisearchBackend:
    def __init__(self, url: str, api_key: str) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key

    def health(self) -> dict[str, Any]:
        # GET /health is Meilisearch's documented liveness endpoint: {"status": "available"}.
        with urllib.request.urlopen(f"{self.url}/health", timeout=3) as response:
            body = json.load(response)
        if body.get("status") != "available":
            raise RuntimeError(f"meilisearch says {body!r}")
        return {"backend": "meilisearch"}


def get_backend() -> SearchBackend:
    if settings.SEARCH_BACKEND == "meilisearch":
        return MeilisearchBackend(settings.MEILISEARCH_URL, settings.MEILISEARCH_API_KEY)
    return DatabaseBackend()
