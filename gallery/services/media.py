"""Media writes: the one path from stored bytes to a media row, deletion, new tokens.

Services are keyword-only, typed and atomic. Storage I/O happens outside the row locks
where it can; side effects (jobs, events) are sent after commit.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from gallery import events, jobs
from gallery.models import Album, Media, User, new_media_token
from gallery.processing.filetypes import guess_content_type, kind_for
from gallery.services.accounts import quota_check
from gallery.storage import media_storage, original_key

HASH_CHUNK = 1024 * 1024


@dataclass
class IngestResult:
    media: Media
    created: bool


def sha256_of(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def clean_filename(filename: str | None) -> str:
    """A file name safe to keep and show: no path separators, at most 255 characters."""
    # Control characters (NUL above all: PostgreSQL refuses it) have no place in a name.
    name = "".join(ch for ch in (filename or "") if ch.isprintable())
    return name.strip().replace("/", "_").replace("\\", "_")[:255] or "upload"


def media_ingest(*, owner: User, stream: IO[bytes], size: int, filename: str,
                 content_type: str | None = None, file_modified_at: datetime | None = None) -> IngestResult:
    """Store an uploaded file as a new media of `owner` and queue its processing.

    The quota is checked before any byte is stored. A file the owner already has (same
    SHA-256) resolves to the existing media and nothing new is stored.
    """
    filename = clean_filename(filename)
    quota_check(user=owner, requested=size)
    sha256 = sha256_of(stream)
    existing = Media.objects.filter(owner=owner).with_sha256(sha256).order_by("created_at").first()
    if existing is not None:
        return IngestResult(media=existing, created=False)

    media_id = uuid.uuid4()
    storage = media_storage()
    key = storage.save(original_key(user_id=owner.pk, media_id=media_id, filename=filename), stream)
    try:
        result = media_record(owner=owner, media_id=media_id, key=key, size=size, sha256=sha256,
                              filename=filename, content_type=content_type, file_modified_at=file_modified_at)
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
                 file_modified_at: datetime | None = None) -> IngestResult:
    """Record stored bytes as a media of `owner`: the one place media rows are created.

    Under a lock on the user row: with `dedup`, a file the owner already has (same SHA-256)
    resolves to the existing media (created=False; the caller deletes its bytes); otherwise
    the size counts as used. `reserved` bytes of the owner's reservation (an upload's) are
    released either way. A pending media has its processing queued after commit.
    Until processing finds a capture date, taken_at is the file's own date when the client
    sent one (`file_modified_at`), else now; either way flagged as estimated.
    """
    # The row lock serialises quota accounting and dedup per user; checks are repeated under it.
    locked = User.objects.select_for_update().get(pk=owner.pk)
    existing = None
    if dedup:
        existing = Media.objects.filter(owner=locked).with_sha256(sha256).order_by("created_at").first()
    if existing is not None:
        if reserved:
            User.objects.filter(pk=owner.pk).update(reserved_bytes=F("reserved_bytes") - reserved)
        if album is not None:
            album.media.add(existing)
        return IngestResult(media=existing, created=False)
    if size > reserved:
        quota_check(user=locked, requested=size - reserved)
    filename = clean_filename(filename)
    content_type = guess_content_type(filename, content_type)
    media = Media.objects.create(
        id=media_id, owner=locked, kind=kind_for(content_type, filename), original_filename=filename,
        content_type=content_type, size=size, sha256=sha256, status=status, original_key=key,
        taken_at=file_modified_at or timezone.now(), taken_at_estimated=True,
    )
    User.objects.filter(pk=owner.pk).update(used_bytes=F("used_bytes") + size,
                                            reserved_bytes=F("reserved_bytes") - reserved)
    if album is not None:
        album.media.add(media)
    # The event first: callbacks run in order, and inline jobs (tests) run in theirs.
    events.send_after_commit(owner.pk, "media.created", media_id=str(media.pk), status=media.status)
    if status == Media.Status.PENDING:
        media_queue_processing(media=media)
    return IngestResult(media=media, created=True)


def media_queue_processing(*, media: Media) -> None:
    """Queue the processing job of a media (after commit); videos go to their own queue."""
    queue = "video" if media.kind == Media.Kind.VIDEO else "default"
    jobs.enqueue("process_media", {"media_id": str(media.pk)}, queue=queue)


def media_rotate_token(*, media: Media) -> Media:
    """Give a media a new delivery token: every URL handed out before stops working."""
    media.token = new_media_token()
    Media.objects.filter(pk=media.pk).update(token=media.token, updated_at=timezone.now())
    return media


@transaction.atomic
def media_delete(*, media: Media) -> None:
    """Delete a media, its variants and its bytes; the owner's usage drops by its size."""
    keys = [media.original_key, *media.variants.values_list("storage_key", flat=True)]
    owner_id = media.owner_id
    size = media.size
    media_id = str(media.pk)
    Album.objects.filter(cover=media).update(cover=None)
    media.delete()
    User.objects.filter(pk=owner_id).update(used_bytes=F("used_bytes") - size)
    transaction.on_commit(lambda: _delete_blobs(keys))
    events.send_after_commit(owner_id, "media.deleted", media_id=media_id)


def _delete_blobs(keys: Iterable[str]) -> None:
    storage = media_storage()
    for key in keys:
        if key:
            storage.delete(key)




