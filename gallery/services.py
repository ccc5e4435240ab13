"""Writes to the gallery: every change to users, media, albums and keys goes through here.

Services are keyword-only, typed and atomic. Storage I/O happens outside the row locks
where it can; side effects (jobs, events) are sent after commit.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from gallery import events, jobs
from gallery.exceptions import InvalidInput, NotFound, ProtectedAlbum, QuotaExceeded
from gallery.filetypes import guess_content_type, kind_for
from gallery.models import Album, ApiKey, Media, User, new_media_token
from gallery.storage import media_storage, original_key

FAVOURITES_TITLE = "Favourites"
HASH_CHUNK = 1024 * 1024


# --- Users -------------------------------------------------------------------------------
def user_init(*, user: User) -> None:
    """Give a new account what every account has: its Favourites album."""
    Album.objects.get_or_create(owner=user, is_favourites=True, defaults={"title": FAVOURITES_TITLE})


@transaction.atomic
def user_create(
    *, username: str, password: str | None, quota_bytes: int | None = None, email: str = "",
    is_staff: bool = False, is_superuser: bool = False, time_zone: str = "UTC",
) -> User:
    """Create a local account (with its Favourites album)."""
    if User.objects.filter(username=username).exists():
        raise InvalidInput(f"a user named {username!r} already exists")
    extra = {"time_zone": time_zone, "is_staff": is_staff, "is_superuser": is_superuser}
    if quota_bytes is not None:
        if quota_bytes < 0:
            raise InvalidInput("quota must not be negative")
        extra["quota_bytes"] = quota_bytes
    return User.objects.create_user(username=username, email=email, password=password, **extra)


def quota_check(*, user: User, requested: int) -> None:
    """Raise QuotaExceeded when `requested` more bytes would not fit in the user's quota."""
    if user.used_bytes + user.reserved_bytes + requested > user.quota_bytes:
        raise QuotaExceeded(
            f"{requested} bytes do not fit: quota {user.quota_bytes}, used {user.used_bytes}, "
            f"reserved {user.reserved_bytes}",
            quota=user.quota_bytes, used=user.used_bytes, reserved=user.reserved_bytes, requested=requested,
        )


# --- Media -------------------------------------------------------------------------------
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
    existing = Media.objects.filter(owner=owner, sha256=sha256).order_by("created_at").first()
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
        existing = Media.objects.filter(owner=locked, sha256=sha256).order_by("created_at").first()
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


def media_get_for(*, user: User, media_id: uuid.UUID | str) -> Media:
    """The media with this id if `user` owns it; NotFound otherwise (never a hint it exists)."""
    try:
        return Media.objects.owned_by(user).get(pk=media_id)
    except (Media.DoesNotExist, ValueError):
        raise NotFound("no such media") from None


# --- Albums ------------------------------------------------------------------------------
@transaction.atomic
def album_delete(*, album: Album) -> None:
    """Delete an album (its media stay); the Favourites album cannot be deleted."""
    if album.is_favourites:
        raise ProtectedAlbum("the Favourites album cannot be deleted")
    album.delete()


# --- API keys ----------------------------------------------------------------------------
KEY_PREFIX = "chip_"


def _hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def apikey_create(*, user: User, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create an API key; returns the row and the raw key, which is shown once and never stored."""
    unknown = sorted(set(scopes) - set(ApiKey.SCOPES))
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be among {', '.join(ApiKey.SCOPES)}; got {', '.join(scopes) or 'none'}")
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(user=user, name=name, prefix=prefix, hashed_secret=_hash_key(raw),
                                scopes=sorted(set(scopes)))
    return key, raw


def apikey_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching `raw`, with its last use recorded; None when it matches none."""
    if not raw.startswith(KEY_PREFIX):
        return None
    prefix = raw[len(KEY_PREFIX):].split("_", 1)[0]
    if not re.fullmatch(r"[0-9a-f]{8}", prefix):
        return None  # not one of ours; never let arbitrary bytes reach the query
    key = ApiKey.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.hashed_secret, _hash_key(raw)) or not key.user.is_active:
        return None
    now = timezone.now()
    # Writing on every request would serialise the API on one row; a minute is precise enough.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def apikey_revoke(*, key: ApiKey) -> None:
    """Revoke a key; it stops authenticating at once."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
