"""Search's job handlers (discovered by gallery's ready(), like every app's tasks module)."""

from __future__ import annotations

from gallery.jobs import job
from search import indexing


@job(indexing.INDEX_JOB, on_failure=indexing.index_retry_later)
def search_index(*, media_ids: list[str]) -> None:
    indexing.index_media(media_ids=media_ids)


@job(indexing.REINDEX_USER_JOB)
def search_reindex_user(*, user_id: str) -> None:
    indexing.reindex(user_id=user_id)
