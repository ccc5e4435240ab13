"""Media writes: the one path from stored bytes to a media row, deletion, new tokens.

Services are keyword-only, typed and atomic. Storage I/O happens outside the row locks
where it can; side effects (jobs, events) are sent after commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Iterable

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from gallery import events, jobs
from gallery.exceptions import StorageUnavailable
from gallery.models import Album, KindUsage, Media, User, Variant, new_media_token
from gallery.processing.filetypes import SNIFF_BYTES, content_type_for, kind_for
from gallery.services.accounts import quota_check
from gallery.services.changes import media_changed
from gallery.services.library import album_items_add
from gallery.services.timeline import timeline_add
from gallery.storage import STORAGE_ERRORS, blob_head, media_storage, original_key, sha256_of


@dataclass
class IngestResult:
    media: Media
    created: bool


def clean_filename(filename: str | None) -> str:
    """A file name safe to keep and show: no path separators, at most 255 characters."""
    # Control characters (NUL above all: PostgreSQL refuses it) have no place in a name.
    name = "".join(ch for ch in (filename or "") if ch.isprintable())
    return name.strip().replace("/", "_").replace("\\", "_")[:255] or "upload"


def media_ingest(*, owner: User, stream: IO[bytes], size: int, filename: str,
                 content_type: str | None = None, file_modified_at: datetime | None = None,
                 sha256: str | None = None, details: dict[str, Any] | None = None) -> IngestResult:
    """Store an uploaded file as a new media of `owner` and queue its processing.

    The quota is checked before any byte is stored. A file the owner already has (same
    SHA-256) resolves to the existing media and nothing new is stored. `sha256` is for a
    caller that hashed the stream itself (import_folder hashes on a thread pool); `details`
    start the new row's details (import_folder's sidecar data).
    """
    filename = clean_filename(filename)
    quota_check(user=owner, requested=size)
    stream.seek(0)
    if sha256 is None:
        sha256 = sha256_of(stream)
        stream.seek(0)
    # Before storing anything: the bytes the owner already has are not stored twice.
    existing = Media.objects.same_bytes(owner_id=owner.pk, sha256=sha256).first()
    if existing is not None:
        return IngestResult(media=existing, created=False)

    media_id = uuid.uuid4()
    storage = media_storage()
    key = storage.save(original_key(user_id=owner.pk, media_id=media_id, filename=filename), stream)
    try:
        result = media_record(owner=owner, media_id=media_id, key=key, size=size, sha256=sha256,
                              filename=filename, content_type=content_type, file_modified_at=file_modified_at,
                              details=details)
    except BaseException:
        storage.delete(key)  # nothing may stay behind for a media that does not exist
        raise
    if not result.created:  # the same bytes arrived meanwhile by another request
        storage.delete(key)
    return result


@transaction.atomic
def media_record(*, owner: User, media_id: uuid.UUID, key: str, size: int, sha256: str, filename: str,
                 content_type: str | None, reserved: int = 0, album: Album | None = None,
                 dedup: bool = True, status: str = Media.Status.PENDING,
                 file_modified_at: datetime | None = None, details: dict[str, Any] | None = None) -> IngestResult:
    """Record stored bytes as a media of `owner`: the one place media rows are created.

    Under a lock on the user row: with `dedup`, a file the owner already has (same SHA-256)
    resolves to the existing media (created=False; the caller deletes its bytes); otherwise
    the size counts as used. `reserved` bytes of the owner's reservation (an upload's) are
    released either way. A pending media has its processing queued after commit.
    Until processing finds a capture date, taken_at is the file's own date when the client
    sent one (`file_modified_at`), else now; either way flagged as estimated.
    The stored type comes from the file's first bytes; `content_type` (the client's) is only
    a hint for formats those do not reveal (gallery.processing.filetypes.content_type_for).
    """
    # Before the row lock: a few KB, one ranged GET on S3.
    try:
        head = blob_head(key, size, SNIFF_BYTES)
    except STORAGE_ERRORS as exc:
        raise StorageUnavailable(f"could not read the stored file to tell its type: {exc}") from exc
    # The row lock serialises quota accounting and dedup per user; checks are repeated under it.
    # FOR NO KEY UPDATE: rows that merely point at the user (counters, sync clock, search
    # entries) can still be written by other transactions, so their FK checks never deadlock with it.
    locked = User.objects.select_for_update(no_key=True).get(pk=owner.pk)
    existing = None
    if dedup:
        existing = Media.objects.same_bytes(owner_id=locked.pk, sha256=sha256).first()
    if existing is not None:
        if reserved:
            User.objects.filter(pk=owner.pk).update(reserved_bytes=F("reserved_bytes") - reserved)
        if album is not None:
            album_items_add(album=album, media_ids=[existing.pk])
        return IngestResult(media=existing, created=False)
    if size > reserved:
        quota_check(user=locked, requested=size - reserved)
    filename = clean_filename(filename)
    content_type = content_type_for(filename=filename, declared=content_type, head=head)
    media = Media(
        id=media_id, owner=locked, kind=kind_for(content_type, filename), original_filename=filename,
        content_type=content_type, size=size, sha256=sha256, status=status, original_key=key,
        taken_at=file_modified_at or timezone.now(), taken_at_estimated=True, details=details or {},
    )
    media.set_capture_day(locked.time_zone)
    media.save(force_insert=True)
    User.objects.filter(pk=owner.pk).update(used_bytes=F("used_bytes") + size,
                                            reserved_bytes=F("reserved_bytes") - reserved)
    usage_add(media=media, count=1)
    if album is not None:
        album_items_add(album=album, media_ids=[media.pk])
    # The event first: callbacks run in order, and inline jobs (tests) run in theirs.
    events.send_after_commit(owner.pk, "media.created", media_id=str(media.pk), status=media.status)
    if status == Media.Status.PENDING:
        media_queue_processing(media=media)
    media_changed(owner_id=locked.pk, media_ids=[media.pk])
    return IngestResult(media=media, created=True)


def usage_add(*, media: Media, count: int) -> None:
    """Count `count` media like this one (and their bytes) in the owner's counters for its kind
    and place; call it in the transaction that adds, removes or moves the row (-1 before, +1
    after a move), so the counters stay exact. The timeline's day counters follow the library."""
    place = KindUsage.place_of(media)
    if place == KindUsage.Place.LIBRARY:
        timeline_add(owner_id=media.owner_id, day=media.taken_day, count=count)
    rows = KindUsage.objects.filter(owner_id=media.owner_id, kind=media.kind, place=place)
    if rows.update(count=F("count") + count, bytes=F("bytes") + count * media.size):
        return
    try:
        with transaction.atomic():  # the first media of this kind and place
            KindUsage.objects.create(owner_id=media.owner_id, kind=media.kind, place=place, count=count,
                                     bytes=count * media.size)
    except IntegrityError:  # a concurrent first one made the row: count on it
        rows.update(count=F("count") + count, bytes=F("bytes") + count * media.size)


def media_queue_processing(*, media: Media) -> None:
    """Queue the processing job of a media (after commit); videos go to their own queue."""
    queue = "video" if media.kind == Media.Kind.VIDEO else "default"
    jobs.enqueue("process_media", {"media_id": str(media.pk)}, queue=queue)


@transaction.atomic
def media_rotate_token(*, media: Media) -> Media:
    """Give a media a new delivery token: every URL handed out before stops working."""
    media.token = new_media_token()
    Media.objects.filter(pk=media.pk).update(token=media.token, updated_at=timezone.now())
    media_changed(owner_id=media.owner_id, media_ids=[media.pk])  # its URLs changed
    return media


@transaction.atomic
def media_delete(*, media: Media) -> None:
    """Delete a media, its variants and its bytes; the owner's usage drops by its size."""
    keys = [media.original_key, *media.variants.values_list("storage_key", flat=True)]
    owner_id = media.owner_id
    size = media.size
    media_id = str(media.pk)
    in_vault = media.in_vault
    Album.objects.filter(cover=media).update(cover=None)
    usage_add(media=media, count=-1)
    media.delete()
    User.objects.filter(pk=owner_id).update(used_bytes=F("used_bytes") - size)
    if not in_vault:  # sync never hears of vault items (moving one in was its deletion there)
        media_changed(owner_id=owner_id, media_ids=[media_id], deleted=True)
    transaction.on_commit(lambda: _delete_blobs(keys))
    events.send_after_commit(owner_id, "media.deleted", media_id=media_id)


def _delete_blobs(keys: Iterable[str]) -> None:
    storage = media_storage()
    for key in keys:
        if key:
            storage.delete(key)


@transaction.atomic
def variants_forget_missing(*, media: Media) -> list[str]:
    """Forget the variant rows of `media` whose blob is gone (processing then makes those levels
    again); returns their levels. One existence check per variant (a HEAD on S3)."""
    storage = media_storage()
    gone = [v for v in media.variants.all() if not storage.exists(v.storage_key)]
    if gone:
        Variant.objects.filter(pk__in=[v.pk for v in gone]).delete()
        media_changed(owner_id=media.owner_id, media_ids=[media.pk])  # its variants' URLs changed
    return sorted(v.level for v in gone)
