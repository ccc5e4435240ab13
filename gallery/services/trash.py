"""The trash: a trashed media leaves the library (visible_to no longer shows it) but keeps its
bytes, which still count against the quota until it is purged."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from gallery import events
from gallery.models import Media
from gallery.services.changes import media_changed
from gallery.services.media import usage_add


@transaction.atomic
def media_trash(*, media: Media) -> bool:
    """Move a media to the trash; False when it is there already (or gone)."""
    locked = Media.objects.select_for_update().filter(pk=media.pk, trashed_at__isnull=True).first()
    if locked is None:
        return False
    usage_add(media=locked, count=-1)  # out of the counters of its place (library or vault)...
    locked.trashed_at = timezone.now()
    Media.objects.filter(pk=locked.pk).update(trashed_at=locked.trashed_at, updated_at=locked.trashed_at)
    usage_add(media=locked, count=1)  # ...into the trash's
    media_changed(owner_id=locked.owner_id, media_ids=[locked.pk])  # phones read it as gone (sync)
    media.trashed_at = locked.trashed_at
    # For every open page the media is gone: the same event as a deletion (it names only the id).
    events.send_after_commit(locked.owner_id, "media.deleted", media_id=str(locked.pk))
    return True
