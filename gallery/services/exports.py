"""Exports: a user asks for a zip of their library; a job builds it into their storage.

The zip's layout is gallery.operations.export. It lives at `<user-id>/library/exports/<id>.zip`
and is handed out only to its owner (media_api.views.export). A new export, once ready,
replaces the user's earlier ones (their blobs are deleted after commit), and every export is
deleted EXPORT_KEEP_HOURS after it finished (the worker's periodic `exports_prune`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gallery import events, jobs
from gallery.models import Export, User
from gallery.operations.export import export_write
from gallery.storage import LIBRARY, blob_size, blob_writer, media_storage


def export_key(*, user_id: uuid.UUID, export_id: uuid.UUID) -> str:
    return f"{user_id}/{LIBRARY}/exports/{export_id}.zip"


@transaction.atomic
def export_request(*, user: User) -> Export:
    """Queue an export of `user`'s library; one already queued or running is returned instead."""
    User.objects.select_for_update(no_key=True).filter(pk=user.pk).first()  # one request at a time per user
    pending = Export.objects.filter(owner=user, state__in=[Export.State.QUEUED, Export.State.RUNNING]).first()
    if pending is not None:
        return pending
    export = Export.objects.create(owner=user)
    jobs.enqueue("export_build", {"export_id": str(export.pk)})
    return export


def export_build(*, export_id: uuid.UUID | str) -> None:
    """Build the zip of a queued export (the job `export_build`; safe to run twice)."""
    export = Export.objects.select_related("owner").filter(pk=export_id).first()
    if export is None or export.state == Export.State.READY:
        return
    Export.objects.filter(pk=export.pk).update(state=Export.State.RUNNING)
    storage = media_storage()
    key = export_key(user_id=export.owner_id, export_id=export.pk)
    with blob_writer(storage, key, content_type="application/zip") as out:
        stats = export_write(user=export.owner, storage=storage, out=out)
    size = blob_size(storage, key) or 0
    with transaction.atomic():
        older = list(Export.objects.filter(owner_id=export.owner_id, state__in=[Export.State.READY,
                                                                               Export.State.FAILED])
                     .exclude(pk=export.pk))
        Export.objects.filter(pk=export.pk).update(state=Export.State.READY, key=key, size=size,
                                                   media_count=stats.media, finished_at=timezone.now(), error="")
        for old in older:
            export_delete(export=old)
        events.send_after_commit(export.owner_id, "export.ready", export_id=str(export.pk))


def export_mark_failed(*, export_id: uuid.UUID | str, error: str) -> None:
    Export.objects.filter(pk=export_id).exclude(state=Export.State.READY).update(
        state=Export.State.FAILED, error=error[:5000], finished_at=timezone.now())


def exports_prune(*, now=None) -> int:
    """Delete exports that finished more than EXPORT_KEEP_HOURS ago (zip included); returns how many."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.EXPORT_KEEP_HOURS)
    old = Export.objects.filter(state__in=[Export.State.READY, Export.State.FAILED], finished_at__lt=cutoff)
    count = 0
    for export in old.iterator():
        export_delete(export=export)
        count += 1
    return count


@transaction.atomic
def export_delete(*, export: Export) -> None:
    """Forget an export and delete its zip (after commit)."""
    key = export.key
    Export.objects.filter(pk=export.pk).delete()
    if key:
        transaction.on_commit(lambda: media_storage().delete(key))
