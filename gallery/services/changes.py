"""The sync change log: what phones ask `GET /api/v1/sync/` for.

Write side: `media_changed(owner_id=..., media_ids=[...], deleted=False)`, called inside the
transaction that wrote those media, after the rows it reports on are written (it is meant to
be the transaction's last write). Every write path that changes what a media's JSON says, or
whether it is in the library, calls it: created, processed (ready or failed), edited,
favourited, tagged, added to or removed from an album, trashed and restored, moved to and
from the vault, deleted or purged (`deleted=True` for a media whose row is gone for good: it
makes the row a tombstone that pruning may drop after SYNC_TOMBSTONE_DAYS).

Why it is correct under concurrent writes: numbers are per owner, taken by incrementing the
owner's SyncClock row, which keeps that row locked until the transaction ends. A second
writer of the same owner waits for the first to commit before it gets its number, so numbers
are handed out in commit order; a reader that sees number n therefore sees every change
numbered below n, and its cursor never passes a change that commits later. (SQLite runs one
write transaction at a time, which gives the same order.) A media's row carries the number of
its latest change, so a page is at most one row per media.

Read side: `changes_page` (here, beside the writes, because its correctness depends on
theirs) turns rows after a cursor into media that are still visible (upserted) and ids that
are not (deleted), asking the one visibility rule, so a trashed or vaulted media reads as
deleted whatever flag its writer passed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from gallery.exceptions import FullSyncRequired
from gallery.models import Media, MediaChange, SyncClock


def media_changed(*, owner_id: uuid.UUID | str, media_ids: Iterable[uuid.UUID | str], deleted: bool = False) -> None:
    """Record that these media of `owner_id` changed (or, with `deleted`, are gone for good).

    Atomic by itself when called outside a transaction; inside one it holds the owner's clock
    row until that transaction ends."""
    ids = list(dict.fromkeys(uuid.UUID(str(m)) for m in media_ids))
    if not ids:
        return
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        top = _take_numbers(owner_id, len(ids))
        rows = [MediaChange(owner_id=owner_id, media_id=media_id, seq=top - len(ids) + i + 1, deleted=deleted,
                            changed_at=now) for i, media_id in enumerate(ids)]
        MediaChange.objects.bulk_create(rows, update_conflicts=True, unique_fields=["media_id"],
                                        update_fields=["owner", "seq", "deleted", "changed_at"])


def _take_numbers(owner_id: uuid.UUID | str, count: int) -> int:
    """Add `count` to the owner's clock (made on first use) and return its new value; the row
    stays locked until the transaction ends. One statement on PostgreSQL and SQLite alike."""
    table = SyncClock._meta.db_table
    owner = SyncClock._meta.get_field("owner").get_db_prep_value(owner_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (owner_id, seq, pruned_seq) VALUES (%s, %s, 0) "
            f"ON CONFLICT (owner_id) DO UPDATE SET seq = {table}.seq + excluded.seq RETURNING seq",
            [owner, count])
        return cursor.fetchone()[0]


def changes_prune(*, now: datetime | None = None) -> int:
    """Forget tombstones older than SYNC_TOMBSTONE_DAYS, owner by owner; each owner's clock
    remembers the highest number forgotten, so an older cursor is told to sync from scratch.
    Returns how many rows went."""
    horizon = (now or timezone.now()) - timedelta(days=settings.SYNC_TOMBSTONE_DAYS)
    old = MediaChange.objects.filter(deleted=True, changed_at__lt=horizon)
    removed = 0
    for owner_id, top in old.values("owner_id").annotate(top=Max("seq")).values_list("owner_id", "top"):
        with transaction.atomic():
            # The clock first: the same lock order as media_changed (clock, then rows).
            SyncClock.objects.filter(owner_id=owner_id).update(pruned_seq=Greatest("pruned_seq", top))
            removed += old.filter(owner_id=owner_id, seq__lte=top).delete()[0]
    return removed


@dataclass
class ChangesPage:
    upserted: list[Media]
    deleted: list[uuid.UUID]
    cursor: int
    has_more: bool


def changes_page(*, user, after: int, limit: int, media: QuerySet | None = None) -> ChangesPage:
    """The changes of `user`'s media numbered after `after`, at most `limit` of them, oldest
    first. `media` is the queryset to load visible media from (the API's, with its
    prefetches); it must come from Media.objects.visible_to(user). Raises FullSyncRequired
    when tombstones after `after` were pruned or `after` is a number never handed out.
    Four queries whatever the page size (rows, media, and whatever `media` prefetches, clock)."""
    rows = list(MediaChange.objects.filter(owner=user, seq__gt=after).order_by("seq")
                .values_list("seq", "media_id")[: limit + 1])
    # The clock after the rows: a prune that committed before the rows were read is seen
    # here (410); one after it deleted nothing this page needed.
    seq, pruned = SyncClock.objects.filter(owner=user).values_list("seq", "pruned_seq").first() or (0, 0)
    if after and (after < pruned or after > seq):
        raise FullSyncRequired("this cursor is older than the kept tombstones (or unknown): sync from the start",
                               oldest_cursor=str(pruned))
    has_more = len(rows) > limit
    rows = rows[:limit]
    ids = [media_id for _, media_id in rows]
    qs = media if media is not None else Media.objects.visible_to(user)
    found = {m.pk: m for m in qs.filter(pk__in=ids)} if ids else {}
    return ChangesPage(upserted=[found[i] for i in ids if i in found], deleted=[i for i in ids if i not in found],
                       cursor=rows[-1][0] if rows else after, has_more=has_more)
