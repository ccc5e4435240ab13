"""The trash: DELETE moves a media here; restore brings it back; after TRASH_DAYS (or on
"empty") the purge deletes rows, variants and bytes for good.

Trashed bytes still count in used_bytes (against the quota) until purged. The counters move
with the row in the same transaction (usage_add: library -> trash and back), and the purge
lowers used_bytes and the trash counters by exactly what it deleted, under the rows' locks,
so a restore racing a purge either keeps the media or loses it, never half.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from gallery import events
from gallery.exceptions import InvalidInput, NotFound
from gallery.models import Album, KindUsage, Media, User, Variant
from gallery.services.changes import media_changed
from gallery.services.library import MAX_IDS
from gallery.services.media import usage_add
from gallery.storage import media_storage

log = logging.getLogger(__name__)
PURGE_BATCH = 200


@transaction.atomic
def media_trash(*, media: Media) -> bool:
    """Move a media to the trash; False when it is there already (or gone). Its bytes keep
    counting until purged."""
    locked = Media.objects.select_for_update().filter(pk=media.pk).first()
    if locked is None or locked.trashed_at is not None:
        return False
    usage_add(media=locked, count=-1)
    locked.trashed_at = timezone.now()
    usage_add(media=locked, count=1)
    Media.objects.filter(pk=locked.pk).update(trashed_at=locked.trashed_at, updated_at=timezone.now())
    media.trashed_at = locked.trashed_at
    media_changed(owner_id=locked.owner_id, media_ids=[locked.pk])  # phones read it as gone (sync)
    # For open pages it is gone: the one event a page hears about a media it can no longer see.
    events.send_after_commit(locked.owner_id, "media.deleted", media_id=str(locked.pk))
    return True


@transaction.atomic
def trash_restore(*, owner: User, media: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Bring media back from the owner's trash; any id not in it is a 404 naming it."""
    wanted = list(dict.fromkeys(media))
    if len(wanted) > MAX_IDS:
        raise InvalidInput(f"at most {MAX_IDS} media ids in one request", max_ids=MAX_IDS)
    rows = {m.pk: m for m in Media.objects.trashed_for(owner).select_for_update().filter(pk__in=wanted)}
    missing = [str(pk) for pk in wanted if pk not in rows]
    if missing:
        raise NotFound("no such media in the trash", missing=missing)
    now = timezone.now()
    for pk in wanted:
        row = rows[pk]
        usage_add(media=row, count=-1)
        row.trashed_at = None
        usage_add(media=row, count=1)
        events.send_after_commit(owner.pk, "media.restored", media_id=str(pk))
    Media.objects.filter(pk__in=wanted).update(trashed_at=None, updated_at=now)
    media_changed(owner_id=owner.pk, media_ids=wanted)
    return wanted


def trash_empty(*, owner: User) -> int:
    """Purge everything in the owner's trash now; the number of media purged."""
    return trash_purge(owner=owner, before=timezone.now() + timedelta(seconds=1))


def trash_purge(*, owner: User | None = None, before: datetime | None = None) -> int:
    """Purge media trashed before `before` (default: TRASH_DAYS ago), of one owner or all,
    in batches of one transaction each; the number purged. Safe to run twice or at once."""
    cutoff = before or timezone.now() - timedelta(days=settings.TRASH_DAYS)
    candidates = Media.objects.filter(trashed_at__isnull=False, trashed_at__lt=cutoff)
    if owner is not None:
        candidates = candidates.filter(owner=owner)
    purged = 0
    while True:
        ids = list(candidates.order_by("trashed_at", "id").values_list("pk", flat=True)[:PURGE_BATCH])
        if not ids:
            return purged
        # A batch restored meanwhile purges nothing and no longer matches: no endless loop.
        purged += _purge_batch(ids=ids, cutoff=cutoff)


@transaction.atomic
def _purge_batch(*, ids: Iterable[uuid.UUID], cutoff: datetime) -> int:
    """Delete these media if still trashed before `cutoff` (checked under their row locks)."""
    rows = list(Media.objects.select_for_update().filter(pk__in=list(ids), trashed_at__isnull=False,
                                                         trashed_at__lt=cutoff).order_by("pk"))
    if not rows:
        return 0
    pks = [m.pk for m in rows]
    keys = [m.original_key for m in rows]
    keys += list(Variant.objects.filter(media_id__in=pks).values_list("storage_key", flat=True))
    usage: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    freed: dict[uuid.UUID, int] = defaultdict(int)
    for m in rows:
        counts = usage[(m.owner_id, m.kind, KindUsage.place_of(m))]
        counts[0] += 1
        counts[1] += m.size
        freed[m.owner_id] += m.size
    # The user rows before the counters, the order media_record takes them in (no deadlock).
    for owner_id, size in sorted(freed.items(), key=lambda item: str(item[0])):
        User.objects.filter(pk=owner_id).update(used_bytes=F("used_bytes") - size)
    for (owner_id, kind, place), (count, size) in sorted(usage.items(), key=lambda item: str(item[0])):
        KindUsage.objects.filter(owner_id=owner_id, kind=kind, place=place).update(
            count=F("count") - count, bytes=F("bytes") - size)
    Album.objects.filter(cover_id__in=pks).update(cover=None)
    Media.objects.filter(pk__in=pks).delete()  # variants, album and tag links cascade
    for owner_id in sorted(freed, key=str):
        media_changed(owner_id=owner_id, media_ids=[m.pk for m in rows if m.owner_id == owner_id], deleted=True)
    transaction.on_commit(lambda: _delete_blobs(keys))
    for m in rows:
        events.send_after_commit(m.owner_id, "media.deleted", media_id=str(m.pk))
    return len(rows)


def _delete_blobs(keys: Iterable[str]) -> None:
    # After commit: the rows are gone, so a blob that cannot be deleted now is an orphan
    # (logged), never a media without its bytes.
    storage = media_storage()
    for key in keys:
        if not key:
            continue
        try:
            storage.delete(key)
        except Exception:
            log.exception("purge: could not delete blob %s", key)
