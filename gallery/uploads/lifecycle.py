"""The upload lifecycle that tus (gallery.uploads.tus) and direct uploads (gallery.uploads.direct) share.

- Creation reserves `length` bytes against the owner's quota under a lock on the user row,
  so concurrent creations can never push used + reserved past the quota.
- Leaving `active` (completed, terminated, expired, failed) happens under the upload's row
  lock and releases the reservation in the same transaction: exactly once. (A tus partial
  taken by a final upload releases nothing: its reservation becomes the final's.)
- The blobs of an upload that did not complete (local part file, S3 multipart upload, the
  staged S3 tail) are deleted after commit.
- Cleanup of abandoned uploads is gallery.uploads.cleanup.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from gallery.exceptions import InvalidInput, NotFound, TooLarge, TooManyUploads, UploadBusy, UploadExpired
from gallery.models import Album, Media, Upload, User
from gallery.services.accounts import quota_check
from gallery.services.media import IngestResult, clean_filename, media_record
from gallery.storage import STORAGE_ERRORS, is_s3, media_storage, original_key
from gallery.storage import s3_client as storage_s3_client
from gallery.vault.blobs import upload_keys as vault_upload_keys

log = logging.getLogger(__name__)

MiB = 2**20
S3_MAX_PARTS = 10_000


def upload_size_check(length: int) -> None:
    """TooLarge past the largest upload this server takes (TUS_MAX_SIZE, for every way in)."""
    if length > settings.TUS_MAX_SIZE:
        raise TooLarge(f"{length} bytes is more than this server accepts ({settings.TUS_MAX_SIZE})",
                       max_size=settings.TUS_MAX_SIZE)


def upload_expiry() -> datetime:
    return timezone.now() + timedelta(hours=settings.UPLOAD_EXPIRY_HOURS)


def part_size_for(length: int, preferred: int) -> int:
    """`preferred`, grown (in whole MiB) when the file would need more than 10,000 parts."""
    needed = math.ceil(length / S3_MAX_PARTS)
    return max(preferred, math.ceil(needed / MiB) * MiB)


def uploads_prefix(user_id: uuid.UUID | str) -> str:
    # Under the user's library bucket like every other key of theirs.
    return f"{user_id}/library/uploads/"


def s3_client():
    """The process's boto3 client for the media bucket, and the bucket's name."""
    storage = media_storage()
    return storage_s3_client(storage), storage.bucket_name


def metadata_file_date(metadata: dict[str, str]) -> datetime | None:
    """The file's own modification time from Upload-Metadata `lastModified` (ms since the
    epoch, as browsers give File.lastModified); None when absent or not believable."""
    raw = (metadata or {}).get("lastModified", "").strip()
    if not raw.isdigit():
        return None
    try:
        when = datetime.fromtimestamp(int(raw) / 1000, tz=dt_timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return when if when <= timezone.now() + timedelta(days=1) else None


def album_for(*, owner: User, album_id: Any) -> Album | None:
    """The owner's album with this id, None for no id; InvalidInput for anything else."""
    if album_id in (None, ""):
        return None
    try:
        return Album.objects.get(pk=int(album_id), owner=owner)
    except (Album.DoesNotExist, ValueError, TypeError):
        raise InvalidInput(f"no album {album_id!r} of yours") from None


@transaction.atomic
def upload_reserve(*, owner: User, kind: str, length: int, filename: str, filetype: str = "",
                   album: Album | None = None, metadata: dict[str, str] | None = None, sha256: str = "",
                   part_size: int = 0, concat: str = Upload.Concat.NONE, vault: bool = False) -> Upload:
    """Create an active upload of `length` bytes, reserving them against the owner's quota.
    TooManyUploads when the owner holds UPLOAD_MAX_ACTIVE unfinished uploads already.

    A tus partial (`concat="partial"`) keeps its bytes under the uploads prefix, never at an
    original's key: they only become part of one when a final upload takes them."""
    if length < 0:
        raise InvalidInput("the length must not be negative")
    locked = User.objects.select_for_update(no_key=True).get(pk=owner.pk)
    quota_check(user=locked, requested=length)
    # Counted under the user's row lock, so concurrent creations cannot pass the cap. An
    # upload past its expiry is not counted: it answers 410 and cleanup closes it.
    active = Upload.objects.filter(owner=locked, state=Upload.State.ACTIVE, expires_at__gt=timezone.now()).count()
    if active >= settings.UPLOAD_MAX_ACTIVE:
        raise TooManyUploads(f"you have {active} unfinished uploads, the most this server allows at once; "
                             "finish or terminate some first", max_active=settings.UPLOAD_MAX_ACTIVE)
    User.objects.filter(pk=owner.pk).update(reserved_bytes=F("reserved_bytes") + length)
    filename = clean_filename(filename)
    upload = Upload(owner=locked, kind=kind, length=length, filename=filename, filetype=filetype[:127],
                    album=album, metadata=metadata or {}, sha256=sha256, part_size=part_size,
                    concat=concat, expires_at=upload_expiry())
    if concat == Upload.Concat.PARTIAL:
        upload.target_key = f"{uploads_prefix(owner.pk)}{upload.pk}.part"
    else:
        upload.target_key = original_key(user_id=owner.pk, media_id=upload.new_media_id, filename=filename)
    if kind == Upload.Kind.TUS and not is_s3():
        upload.part_key = f"{uploads_prefix(owner.pk)}{upload.pk}.part"
    if vault:  # its encrypted bytes (gallery.uploads.vault), under the vault's prefix, nameless
        upload.target_key, part_key = vault_upload_keys(user_id=owner.pk, upload_id=upload.pk)
        upload.part_key = part_key if upload.part_key else ""
    upload.save()
    return upload


def upload_get_for(*, user: User, upload_id: Any, kind: str) -> Upload:
    """The caller's upload; NotFound for anyone else's or a terminated one, UploadExpired (410)
    for an expired one (an active upload past its expiry is expired right here)."""
    try:
        upload = Upload.objects.owned_by(user).select_related("media").get(pk=upload_id, kind=kind)
    except (Upload.DoesNotExist, ValueError, TypeError, ValidationError):
        raise NotFound("no such upload") from None
    if upload.state in (Upload.State.TERMINATED, Upload.State.FAILED):
        raise NotFound("no such upload")
    if upload.state == Upload.State.EXPIRED:
        raise UploadExpired("this upload expired; start again")
    if (upload.state == Upload.State.ACTIVE and upload.expires_at <= timezone.now() and not is_leased(upload)
            and not upload.survives_expiry):
        upload_close(upload_id=upload.pk, state=Upload.State.EXPIRED)
        raise UploadExpired("this upload expired; start again")
    return upload


def is_leased(upload: Upload, now: datetime | None = None) -> bool:
    return bool(upload.lease_token) and upload.lease_until is not None and upload.lease_until > (now or timezone.now())


@dataclass
class Blobs:
    """What an unfinished upload left in storage."""

    files: list[str] = field(default_factory=list)
    multipart: tuple[str, str] | None = None  # (key, upload id)


def blobs_of(upload: Upload) -> Blobs:
    files = [upload.part_key, upload.tail_key]
    if upload.concat == Upload.Concat.PARTIAL:
        files.append(upload.target_key)  # on S3 the finished partial's bytes
    elif upload.concat == Upload.Concat.FINAL:
        # Not yet media: the assembled original (if it got that far) and the partials' bytes.
        files += [upload.target_key, *(p["key"] for p in upload.partials)]
    blobs = Blobs(files=list(dict.fromkeys(k for k in files if k)))
    if upload.s3_upload_id:
        blobs.multipart = (upload.target_key, upload.s3_upload_id)
    return blobs


def blobs_delete(blobs: Blobs) -> None:
    """Delete blobs, aborting the multipart upload; errors are logged (cleanup sweeps later)."""
    storage = media_storage()
    if blobs.multipart is not None:
        client, bucket = s3_client()
        key, upload_id = blobs.multipart
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                log.warning("could not abort multipart upload %s of %s: %s", upload_id, key, exc)
        except BotoCoreError as exc:
            log.warning("could not abort multipart upload %s of %s: %s", upload_id, key, exc)
    for key in blobs.files:
        try:
            storage.delete(key)
        except STORAGE_ERRORS as exc:
            log.warning("could not delete %s: %s", key, exc)


def upload_close(*, upload_id: uuid.UUID, state: str, error: str = "", extra_files: tuple[str, ...] = ()) -> bool:
    """Move an active upload to `state` (terminated, expired, failed): its reservation is
    released and its blobs deleted after commit. False when it was not active any more."""
    assert state in (Upload.State.TERMINATED, Upload.State.EXPIRED, Upload.State.FAILED)
    with transaction.atomic():
        locked = Upload.objects.select_for_update().filter(pk=upload_id).first()
        if locked is None or locked.state != Upload.State.ACTIVE:
            return False
        blobs = blobs_of(locked)
        blobs.files.extend(extra_files)
        locked.state = state
        locked.error = error
        locked.lease_token, locked.lease_until = "", None
        locked.save(update_fields=["state", "error", "lease_token", "lease_until", "updated_at"])
        User.objects.filter(pk=locked.owner_id).update(reserved_bytes=F("reserved_bytes") - locked.length)
        transaction.on_commit(lambda: blobs_delete(blobs))
    log.info("upload %s %s", upload_id, state)
    return True


def upload_record(*, upload_id: uuid.UUID, sha256: str, dedup: bool = True,
                  status: str = Media.Status.PENDING) -> IngestResult:
    """Make a finished upload's original a media (gallery.services.media.media_record: dedup,
    quota, reservation released) and close the upload, under its row lock: the one completion
    of every upload (tus, tus final, direct). Safe to run again: a completed upload answers its
    media. A duplicate's bytes, and a final upload's partials, are deleted after commit."""
    storage = media_storage()
    with transaction.atomic():
        locked = Upload.objects.select_for_update(of=("self",)).select_related("owner", "album", "media").get(
            pk=upload_id)
        if locked.state == Upload.State.COMPLETED:
            return IngestResult(media=locked.media, created=False)
        if locked.state != Upload.State.ACTIVE:
            raise NotFound("no such upload")
        result = media_record(owner=locked.owner, media_id=locked.new_media_id, key=locked.target_key,
                              size=locked.length, sha256=sha256, filename=locked.filename,
                              content_type=locked.filetype, reserved=locked.length, album=locked.album,
                              dedup=dedup, status=status, file_modified_at=metadata_file_date(locked.metadata))
        locked.state = Upload.State.COMPLETED
        locked.media = result.media
        locked.sha256 = sha256
        locked.expires_at = upload_expiry()
        locked.part_key = locked.tail_key = ""
        locked.save(update_fields=["state", "media", "sha256", "expires_at", "part_key", "tail_key", "updated_at"])
        if not result.created:
            key = locked.target_key
            transaction.on_commit(lambda: storage.delete(key))
        if locked.partials:
            # The partials' bytes are in the original now (their reservation was released
            # with the final's, just above).
            consumed = Blobs(files=[p["key"] for p in locked.partials])
            transaction.on_commit(lambda: blobs_delete(consumed))
    log.info("upload %s complete: media %s (%s)", upload_id, result.media.pk, "new" if result.created else "duplicate")
    return result


def upload_terminate(*, upload: Upload) -> None:
    """Cancel an upload (tus termination, direct abort): 409 while a request writes it."""
    if upload.state == Upload.State.ACTIVE:
        if is_leased(upload):
            raise UploadBusy("this upload is being written right now; try again in a moment")
        if not upload_close(upload_id=upload.pk, state=Upload.State.TERMINATED):
            raise NotFound("no such upload")
    elif upload.state == Upload.State.COMPLETED:
        # Its bytes belong to a media now; only the upload resource goes away.
        Upload.objects.filter(pk=upload.pk, state=Upload.State.COMPLETED).update(
            state=Upload.State.TERMINATED, updated_at=timezone.now())


def fsync_dir(path: Path) -> None:
    """Make a rename durable (the directory entry), where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
