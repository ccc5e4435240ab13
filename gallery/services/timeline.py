"""The timeline's day counters (gallery.models_timeline.TimelineDay) and the album rows'
copy of taken_at (gallery.models.AlbumItem), kept exact.

Call these in the transaction that changes what they follow; gallery.services.media.usage_add
calls `timeline_add` for every row entering or leaving the library, so only a change of a
library media's day needs `timeline_move`, and every change of a media's taken_at needs
`album_items_retime`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from gallery.models import AlbumItem, Media, TimelineDay


def timeline_add(*, owner_id: uuid.UUID, day: date | None, count: int) -> None:
    """Count `count` more (or fewer) library media on that local day."""
    if day is None or count == 0:
        return
    rows = TimelineDay.objects.filter(owner_id=owner_id, day=day)
    if rows.update(count=F("count") + count):
        return
    try:
        with transaction.atomic():
            TimelineDay.objects.create(owner_id=owner_id, day=day, count=count)
    except IntegrityError:  # a concurrent first media of that day made the row
        rows.update(count=F("count") + count)


def timeline_move(*, media: Media, old_day: date | None) -> None:
    """A library media's day changed from `old_day` to media.taken_day: move its count.

    The caller holds the media's row lock. The two rows are updated in day order, so two
    moves in opposite directions cannot deadlock."""
    new_day = media.taken_day
    if old_day == new_day or media.trashed_at is not None or media.in_vault:
        return
    changes = sorted([(old_day, -1), (new_day, 1)], key=lambda change: change[0] or date.min)
    for day, count in changes:
        timeline_add(owner_id=media.owner_id, day=day, count=count)


def album_items_retime(*, media_id: uuid.UUID, taken_at: datetime) -> None:
    """The media's taken_at is now `taken_at`: so is its album rows' copy, the order key of
    every album page. The caller holds the media's row lock (album_items_add takes it too)."""
    AlbumItem.objects.filter(media_id=media_id).exclude(taken_at=taken_at).update(taken_at=taken_at)
