"""Keeping the index in step: changes become "search_index" jobs after commit; jobs and the
reindex command write documents through the backend.

A change never waits for search and never fails because of it: media_changed only notes ids
for the transaction, and one job per transaction (per 500 ids) is stored after it commits
(robust on_commit: an error there is logged, never raised into the upload or edit). The job
recomputes each document from the rows (safe to run twice) and is retried while the backend
is down (gallery.jobs' backoff, then again every SEARCH_RETRY_SECONDS).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Callable, Iterable

from django.db import connection, transaction
from django.db.models import Count, Min
from django.utils import timezone

from gallery import jobs
from gallery.models import Job, Media
from search.backends import SearchBackend, get_backend
from search.documents import documents_for, documents_from

log = logging.getLogger(__name__)

INDEX_JOB = "search_index"
REINDEX_USER_JOB = "search_reindex_user"
JOB_IDS = 500
REINDEX_BATCH = 500
RETRY_SECONDS = 600  # after a job gave up (the backend stayed down): try again this much later


class _Pending:
    """Ids changed in the current transaction; called once after it commits."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def __call__(self) -> None:
        _enqueue_safely(self.ids)


def media_changed(media_ids: Iterable[Any]) -> None:
    """Note that these media changed; their documents are rebuilt after the transaction commits."""
    ids = {str(i) for i in media_ids}
    if not ids:
        return
    if not connection.in_atomic_block:
        _enqueue_safely(ids)
        return
    # One job per transaction: join the callback this transaction registered already. (It is
    # gone from run_on_commit if its savepoint rolled back; then a new one is registered.)
    for _sids, func, _robust in connection.run_on_commit:
        if isinstance(func, _Pending):
            func.ids |= ids
            return
    pending = _Pending()  # it never raises: an error is logged, the commit stands
    pending.ids |= ids
    transaction.on_commit(pending)


def _enqueue_safely(ids: set[str]) -> None:
    try:
        enqueue_index(ids)
    except Exception:  # the index catches up with the next change or `reindex`
        log.exception("could not queue search indexing of %s media", len(ids))


def enqueue_index(media_ids: Iterable[str], *, delay_seconds: float = 0) -> None:
    ids = sorted(set(media_ids))
    for start in range(0, len(ids), JOB_IDS):
        jobs.enqueue(INDEX_JOB, {"media_ids": ids[start:start + JOB_IDS]}, delay_seconds=delay_seconds)


def index_media(*, media_ids: list[str], backend: SearchBackend | None = None) -> tuple[int, int]:
    """Rebuild the documents of these media: index the searchable ones, remove the rest
    (deleted, trashed, in the vault). Returns (indexed, removed)."""
    backend = backend or get_backend()
    ids = sorted({str(uuid.UUID(str(i))) for i in media_ids})
    with transaction.atomic():
        # The rows stay locked until the backend has the documents, so two jobs for one media
        # write in the order they read (PostgreSQL; SQLite serialises write transactions).
        list(Media.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
        docs, gone = documents_for(ids)
        if docs:
            backend.index(docs)
        if gone:
            backend.remove(gone)
    return len(docs), len(gone)


def index_retry_later(payload: dict[str, Any], error: str) -> None:
    """A search_index job gave up (the backend stayed down): queue it again for later."""
    log.warning("search indexing of %s media failed (%s); again in %s s", len(payload.get("media_ids", [])),
                error, RETRY_SECONDS)
    enqueue_index(payload.get("media_ids", []), delay_seconds=RETRY_SECONDS)


def reindex(*, user_id: Any = None, backend: SearchBackend | None = None,
            progress: Callable[[int, int], None] | None = None) -> int:
    """Rebuild the index (of one user): settings, every searchable media, then remove what
    was not seen. `progress(done, total)` follows it. Returns how many were indexed."""
    backend = backend or get_backend()
    backend.setup()
    # Whatever is written from now on is newer than this. (A job that indexed a media just
    # before stays: the rows read below say the same, or a later job follows their change.)
    started = datetime.fromtimestamp(time.time(), tz=UTC)
    rows = Media.objects.filter(trashed_at__isnull=True, in_vault=False)
    if user_id is not None:
        rows = rows.filter(owner_id=user_id)
    total = rows.count()
    done, last = 0, None
    if progress:
        progress(0, total)
    while True:
        batch_qs = rows.order_by("pk").select_related("owner").defer("exif")
        if last is not None:
            batch_qs = batch_qs.filter(pk__gt=last)
        batch = list(batch_qs[:REINDEX_BATCH])
        if not batch:
            break
        last = batch[-1].pk
        docs, _ = documents_from(batch)
        done += backend.index(docs)
        if progress:
            progress(done, total)
    backend.prune(owner_id=str(user_id) if user_id is not None else None, before=started)
    return done


def lag() -> dict[str, Any]:
    """How far the index is behind: search jobs waiting or running, the oldest one's age,
    and jobs that gave up (each was queued again for later)."""
    waiting = Job.objects.filter(queue="default", state__in=[Job.State.QUEUED, Job.State.RUNNING],
                                 name__in=[INDEX_JOB, REINDEX_USER_JOB])
    stats = waiting.aggregate(n=Count("id"), oldest=Min("created_at"))
    failed = Job.objects.filter(queue="default", state=Job.State.FAILED, name__in=[INDEX_JOB, REINDEX_USER_JOB])
    oldest = stats["oldest"]
    return {"pending_jobs": stats["n"],
            "lag_seconds": round((timezone.now() - oldest).total_seconds(), 1) if oldest else 0.0,
            "failed_jobs": failed.count()}
