"""tus 1.0.0 uploads: the state machine and the byte appends. HTTP lives in media_api.views.tus.

- State is the Upload row, so any web process can take any PATCH. A PATCH takes the row
  lock just long enough to check the offset and take the upload's lease (a token and a
  deadline), streams, then takes the lock again to commit the new offset if the lease is
  still its own. Holding a transaction open while a body streams in would pin a database
  connection for minutes and, on SQLite, block every writer. A second PATCH meanwhile gets
  409 (upload_busy), one at a stale offset 409 (offset_mismatch): bytes never interleave.
  The lease is renewed while bytes flow; a writer that could not renew it stops writing.
- Bytes are durable before the offset says so: the local part file is fsynced, S3 parts
  and the tail are uploaded, then the offset is committed.
- Local disk: bytes are appended to a part file, which is first truncated to the stored
  offset (a PATCH that died half-way or a discarded chunk leaves nothing behind).
  Completion renames it to the original's key: no copy.
- S3: a multipart upload to the original's key, parts of `part_size` (the last one less). What is left
  at the end of a PATCH (less than a part) is staged as an object of its own, the tail,
  which the next PATCH (on any process) reads back and puts in front of its bytes. A file
  that fits in one part never starts a multipart upload: it is one PutObject.
- SHA-256: hashlib cannot export its state, so a process keeps the running hash of the
  uploads it receives in memory, valid at one offset. When the next PATCH reaches the
  process holding the hash at the stored offset (one long PATCH, or a client that stays on
  one server) nothing is read twice. Otherwise hashing that upload stops and the finished
  original is read once at completion.
- Upload-Checksum (sha1, md5, sha256) covers one PATCH body; a mismatch, or a body cut
  short while a checksum was promised, discards the chunk. Without a checksum a body cut
  short keeps what arrived, so the client resumes from there.
- Concatenation: a partial upload is received like any other but into a blob under the
  uploads prefix, and makes no media when complete. A final upload names finished
  partials; creating it moves their reservations to it (nothing reserved or released, so
  nothing counted twice), then its "completion" assembles the partials into the original's
  key (local: one streamed copy into the final's part file, then the usual rename; S3:
  UploadPartCopy when every partial but the last is a valid part, else the bytes pass
  through us), records the media and deletes the partials' bytes after commit.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gallery.exceptions import (
    ChecksumMismatch,
    FinalUploadReadOnly,
    InvalidInput,
    NotFound,
    OffsetMismatch,
    PartialIncomplete,
    PartialNotFound,
    StorageUnavailable,
    UploadBusy,
    UploadExpired,
)
from gallery.models import Album, Media, Upload, User
from gallery.services.media import IngestResult, clean_filename
from gallery.storage import blob_sha256, is_s3, media_storage, original_key
from gallery.uploads.lifecycle import (
    STORAGE_ERRORS,
    is_leased,
    part_size_for,
    upload_close,
    upload_expiry,
    upload_record,
    upload_reserve,
    upload_size_check,
    uploads_prefix,
)
from gallery.uploads.tus_storage import (
    BODY_BUFFERS,
    BODY_CHUNK,
    LEASE_SECONDS,
    Hashing,
    Lease,
    LocalSink,
    S3Sink,
    concat_assemble,
    local_complete,
    running_hashes,
    s3_complete,
)
from gallery.uploads.vault import ctr_key, is_vault, vault_upload_complete, vault_upload_key, vault_upload_seal
from gallery.vault import crypto
from gallery.vault.keys import Unlocked

log = logging.getLogger(__name__)

VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "expiration", "checksum", "termination", "concatenation")
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "md5": hashlib.md5, "sha256": hashlib.sha256}
MAX_PARTIALS = 1000


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes


@dataclass
class AppendResult:
    upload: Upload
    media: Media | None = None
    created: bool = False


def _lease_take(*, upload_id: uuid.UUID, offset: int) -> tuple[Upload, Lease]:
    now = timezone.now()
    expired = False
    with transaction.atomic():
        try:
            row = Upload.objects.select_for_update().get(pk=upload_id)
        except Upload.DoesNotExist:
            raise NotFound("no such upload") from None
        if row.state in (Upload.State.TERMINATED, Upload.State.FAILED):
            raise NotFound("no such upload")
        if row.state == Upload.State.EXPIRED:
            raise UploadExpired("this upload expired; start again")
        if row.state == Upload.State.COMPLETED:
            if offset != row.length:
                raise OffsetMismatch(f"the upload is complete at {row.length}", offset=row.length)
            return row, None
        busy = is_leased(row, now)
        if row.expires_at <= now and not busy and not row.survives_expiry:
            expired = True  # (an upload with every byte here is finished, never expired; partials aside)
        elif row.offset != offset:
            raise OffsetMismatch(f"Upload-Offset is {offset} but the upload is at {row.offset}", offset=row.offset)
        elif busy:
            raise UploadBusy("another request is writing this upload; try again in a moment")
        else:
            row.lease_token = secrets.token_hex(16)
            row.lease_until = now + timedelta(seconds=LEASE_SECONDS)
            row.save(update_fields=["lease_token", "lease_until", "updated_at"])
    if expired:
        upload_close(upload_id=upload_id, state=Upload.State.EXPIRED)
        raise UploadExpired("this upload expired; start again")
    return row, Lease(row.pk, row.lease_token)


# --- Services ----------------------------------------------------------------------------
def upload_append(*, upload: Upload, offset: int, stream: IO[bytes], checksum: Checksum | None = None,
                  declared_length: int | None = None, vault: Unlocked | None = None) -> AppendResult:
    """Append a PATCH body at `offset`; completes the upload when the last byte arrives.

    `declared_length` is the body's Content-Length when known: a body that ends before it
    was cut short. Raises OffsetMismatch, UploadBusy, ChecksumMismatch, UploadExpired;
    FinalUploadReadOnly for a body sent to a final upload; VaultLocked for a vault upload
    without `vault`, the unlock of its owner's vault.
    """
    if upload.concat == Upload.Concat.FINAL:
        raise FinalUploadReadOnly("a final upload is made of its partial uploads; it takes no PATCH")
    return _append(upload=upload, offset=offset, stream=stream, checksum=checksum, declared_length=declared_length,
                   vault=vault)


def upload_finish(*, upload: Upload, vault: Unlocked | None = None) -> AppendResult:
    """Finish an upload whose bytes all arrived but whose completion was cut short (a crash,
    a storage error), or a final upload's assembly: what HEAD, cleanup and concatenation do.
    Safe to run again; UploadBusy while another request holds it."""
    return _append(upload=upload, offset=upload.length, stream=None, vault=vault)


def _append(*, upload: Upload, offset: int, stream: IO[bytes] | None, checksum: Checksum | None = None,
            declared_length: int | None = None, vault: Unlocked | None = None) -> AppendResult:
    if declared_length is not None and offset + declared_length > upload.length:
        raise InvalidInput(f"the body would take the upload past its length ({upload.length})")
    upload_key = vault_upload_key(upload=upload, unlocked=vault) if is_vault(upload) else None
    row, lease = _lease_take(upload_id=upload.pk, offset=offset)
    if lease is None:  # already complete: a client repeating its last PATCH
        return AppendResult(upload=row, media=row.media, created=False)
    try:
        # A partial's SHA-256 is never needed: the final's is taken from the assembled bytes.
        hasher = running_hashes.get(row.pk, offset) if row.concat == Upload.Concat.NONE else None
        if row.concat != Upload.Concat.FINAL and (row.offset < row.length or row.length == 0):
            received = _receive(row=row, lease=lease, stream=stream, hasher=hasher, checksum=checksum,
                                declared_length=declared_length, upload_key=upload_key)
            row.offset += received
            if hasher is not None:
                running_hashes.put(row.pk, row.offset, hasher)
        if row.offset < row.length:
            return AppendResult(upload=row)
        result = _complete(row=row, hasher=running_hashes.get(row.pk, row.offset), lease=lease,
                           vault=(vault, upload_key) if upload_key else None)
        row.refresh_from_db()
        if result is None:  # a finished partial: no media until a final upload takes it
            return AppendResult(upload=row)
        return AppendResult(upload=row, media=result.media, created=result.created)
    except STORAGE_ERRORS as exc:
        log.exception("storage failed during PATCH of upload %s", row.pk)
        raise StorageUnavailable(f"storage failed; the upload can be resumed: {exc}") from exc
    finally:
        lease.release()


def _receive(*, row: Upload, lease: Lease, stream: IO[bytes] | None, hasher, checksum: Checksum | None,
             declared_length: int | None, upload_key: bytes | None = None) -> int:
    """Stream one body into storage and commit the new offset; returns the bytes kept. A vault
    upload's bytes are encrypted (CTR at their offset) before the sink sees them."""
    sink = S3Sink(row, lease) if is_s3() else LocalSink(row, lease)
    ctr = crypto.ctr_at(ctr_key(upload_key), row.offset) if upload_key is not None else None
    verifier = CHECKSUM_ALGORITHMS[checksum.algorithm]() if checksum else None
    room = row.length - row.offset
    received, cut_short = 0, False
    hashing = Hashing([hasher, verifier])
    # A stream that fills buffers (media_api.streaming's) gets a few, reused in turn: reading
    # allocates nothing, and a buffer is filled again only once its bytes are hashed.
    buffers = [bytearray(BODY_CHUNK) for _ in range(BODY_BUFFERS)] if hasattr(stream, "readinto") else None
    try:
        while stream is not None:
            wanted = min(BODY_CHUNK, room - received + 1)
            try:
                if buffers is not None:
                    hashing.settle(BODY_BUFFERS - 1)
                    buffer = buffers[0]
                    buffers.append(buffers.pop(0))
                    chunk = memoryview(buffer)[:stream.readinto(memoryview(buffer)[:wanted])]
                else:
                    chunk = stream.read(wanted)
            except OSError:  # the client went away (UnreadablePostError, a reset socket)
                cut_short = True
                break
            if not chunk:
                cut_short = declared_length is not None and received < declared_length
                break
            if received + len(chunk) > room:
                raise InvalidInput(f"the body takes the upload past its length ({row.length})")
            hashing.update(chunk)
            sink.write(ctr.update(chunk) if ctr is not None else chunk)
            received += len(chunk)
        hashing.finish()
        if checksum is not None and cut_short:
            raise ChecksumMismatch("the body was cut short, so its checksum cannot be verified; it was discarded")
        if verifier is not None and verifier.digest() != checksum.digest:
            raise ChecksumMismatch(f"the {checksum.algorithm} of the body does not match Upload-Checksum; "
                                   "the chunk was discarded")
        fields = sink.close()
    except BaseException:
        hashing.finish()
        sink.discard()
        raise
    with transaction.atomic():
        locked = Upload.objects.select_for_update().get(pk=row.pk)
        lost = locked.lease_token != lease.token or locked.state != Upload.State.ACTIVE
        if not lost:
            _commit(row=row, locked=locked, fields=fields, received=received)
            transaction.on_commit(sink.after_commit)
    if lost:
        sink.after_failed_commit()
        raise UploadBusy("another request took over this upload")
    if cut_short:
        log.info("PATCH of upload %s cut short after %s bytes; kept them", row.pk, received)
    return received


def _commit(*, row: Upload, locked: Upload, fields: dict[str, Any], received: int) -> None:
    for name, value in fields.items():
        setattr(locked, name, value)
        setattr(row, name, value)
    locked.offset = row.offset + received
    locked.expires_at = row.expires_at = upload_expiry()
    locked.save(update_fields=[*fields, "offset", "expires_at", "updated_at"])


def _complete(*, row: Upload, hasher, lease: Lease,
              vault: tuple[Unlocked, bytes] | None = None) -> IngestResult | None:
    """Make the original from the received bytes and record the media (or find the one the
    owner already has with these bytes, deleting the duplicate). Safe to run again.

    A partial makes no media: its bytes are made one blob, which waits for a final upload
    (returns None). A final assembles its partials first."""
    storage = media_storage()
    if row.concat == Upload.Concat.PARTIAL:
        _partial_complete(row)
        return None
    sha256 = None
    if row.concat == Upload.Concat.FINAL:
        sha256 = concat_assemble(row, lease)
    elif is_s3(storage):
        s3_complete(row)
    else:
        local_complete(row)
    if vault is not None:  # the CTR blob becomes a vault original (hashed on the way)
        result = vault_upload_complete(row=row, unlocked=vault[0], upload_key=vault[1],
                                       sha256=hasher.hexdigest() if hasher is not None else None)
        running_hashes.drop(row.pk)
        return result
    if sha256 is None:
        sha256 = hasher.hexdigest() if hasher is not None else blob_sha256(row.target_key)
    result = upload_record(upload_id=row.pk, sha256=sha256)
    running_hashes.drop(row.pk)
    return result


def _partial_complete(row: Upload) -> None:
    """A partial's bytes made one blob at its target key (S3: its multipart upload completed)."""
    if is_s3():
        s3_complete(row)
        if row.s3_upload_id:
            Upload.objects.filter(pk=row.pk, state=Upload.State.ACTIVE).update(s3_upload_id="", parts=[])
    else:
        path = Path(media_storage().path(row.part_key))
        if not path.exists() or path.stat().st_size != row.length:
            raise StorageUnavailable(f"the part file of partial upload {row.pk} is missing or has the wrong size")
    running_hashes.drop(row.pk)
    log.info("partial upload %s complete: waiting for a final upload", row.pk)


def upload_create(*, owner: User, length: int, filename: str, filetype: str = "", album: Album | None = None,
                  metadata: dict[str, str] | None = None, stream: IO[bytes] | None = None,
                  checksum: Checksum | None = None, declared_length: int | None = None,
                  concat: str = Upload.Concat.NONE, vault: Unlocked | None = None) -> AppendResult:
    """Create a tus upload of `length` bytes (a partial one with `concat="partial"`), reserving
    them against the owner's quota, with its first bytes when the request carries them
    (creation-with-upload).

    The upload exists even when the first bytes are refused (checksum): the client goes on
    from the offset it is told, as after any failed PATCH.
    """
    if concat not in (Upload.Concat.NONE, Upload.Concat.PARTIAL):
        raise InvalidInput("only a partial upload is created with its length; a final one is concatenated")
    upload_size_check(length)
    part_size = part_size_for(length, settings.TUS_S3_PART_SIZE) if is_s3() else 0
    if vault is not None:  # nothing about the file in the clear: its metadata sealed, no name, no type
        if concat != Upload.Concat.NONE or album is not None:
            raise InvalidInput("a vault upload takes no Upload-Concat and no album")
        metadata, _ = vault_upload_seal(unlocked=vault, metadata=metadata or {})
        filename = filetype = ""
    upload = upload_reserve(owner=owner, kind=Upload.Kind.TUS, length=length, filename=filename, filetype=filetype,
                            album=album, metadata=metadata, part_size=part_size, concat=concat,
                            vault=vault is not None)
    if stream is None and length > 0:
        return AppendResult(upload=upload)
    try:
        return upload_append(upload=upload, offset=0, stream=stream or io.BytesIO(b""), checksum=checksum,
                             declared_length=declared_length, vault=vault)
    except (ChecksumMismatch, InvalidInput) as exc:
        log.info("first bytes of upload %s refused: %s", upload.pk, exc.detail)
        upload.refresh_from_db()
        return AppendResult(upload=upload)


# --- Concatenation -----------------------------------------------------------------------
def upload_concat(*, owner: User, partial_ids: list[str], filename: str, filetype: str = "",
                  album: Album | None = None, metadata: dict[str, str] | None = None) -> AppendResult:
    """Create a final upload from finished partial uploads of `owner`, in this order, and
    assemble it into a media. The partials' reservations move to the final: nothing is
    reserved or released here, and they are released once, when the final leaves `active`.

    Raises PartialNotFound (unknown, someone else's, used or expired), PartialIncomplete,
    InvalidInput, UploadBusy. A final whose assembly failed on storage is returned without
    media: it is finished later (HEAD, cleanup) from its row, like any interrupted completion.
    """
    ids = _partial_ids(partial_ids)
    _partials_finish(owner=owner, ids=ids)
    now = timezone.now()
    with transaction.atomic():
        # Locked in one order, so two finals naming the same partials cannot deadlock.
        found = {row.pk: row for row in Upload.objects.select_for_update().filter(
            pk__in=ids, owner=owner, kind=Upload.Kind.TUS).order_by("pk")}
        partials = [_usable_partial(found.get(pk), pk, now) for pk in ids]
        total = sum(p.length for p in partials)
        upload_size_check(total)
        final = Upload(owner=owner, kind=Upload.Kind.TUS, concat=Upload.Concat.FINAL, length=total, offset=total,
                       filename=clean_filename(filename), filetype=filetype[:127], album=album,
                       metadata=metadata or {}, expires_at=upload_expiry(),
                       part_size=part_size_for(total, settings.TUS_S3_PART_SIZE) if is_s3() else 0,
                       partials=[{"id": str(p.pk), "key": p.target_key, "size": p.length} for p in partials])
        final.target_key = original_key(user_id=owner.pk, media_id=final.new_media_id, filename=final.filename)
        if not is_s3():
            final.part_key = f"{uploads_prefix(owner.pk)}{final.pk}.part"
        final.save()
        # They leave `active` without releasing their reservations: those are the final's now.
        Upload.objects.filter(pk__in=ids).update(state=Upload.State.COMPLETED, lease_token="", lease_until=None,
                                                 updated_at=now)
    log.info("final upload %s of %s bytes takes partials %s", final.pk, total, ", ".join(map(str, ids)))
    try:
        return upload_finish(upload=final)
    except (StorageUnavailable, UploadBusy) as exc:
        log.warning("final upload %s not assembled yet: %s", final.pk, exc.detail)
        final.refresh_from_db()
        return AppendResult(upload=final)


def _partial_ids(raw_ids: list[str]) -> list[uuid.UUID]:
    if not raw_ids:
        raise InvalidInput("Upload-Concat: final needs the URLs of one or more partial uploads")
    if len(raw_ids) > MAX_PARTIALS:
        raise InvalidInput(f"a final upload takes at most {MAX_PARTIALS} partial uploads")
    ids = []
    for raw in raw_ids:
        try:
            ids.append(uuid.UUID(str(raw)))
        except ValueError:
            raise PartialNotFound(f"no partial upload {str(raw)[:60]!r} of yours") from None
    if len(set(ids)) != len(ids):
        raise InvalidInput("each partial upload may appear only once in Upload-Concat")
    return ids


def _partials_finish(*, owner: User, ids: list[uuid.UUID]) -> None:
    """Finish the partials whose bytes all arrived but whose completion was cut short (S3:
    the multipart upload not completed), so the final can take them."""
    pending = Upload.objects.filter(pk__in=ids, owner=owner, kind=Upload.Kind.TUS, concat=Upload.Concat.PARTIAL,
                                    state=Upload.State.ACTIVE).exclude(s3_upload_id="")
    for partial in pending:
        if partial.awaits_completion:
            try:
                upload_finish(upload=partial)
            except (UploadBusy, UploadExpired, NotFound):
                pass  # the checks under the lock say what is wrong with it


def _usable_partial(row: Upload | None, pk: uuid.UUID, now) -> Upload:
    """`row` (locked) when a final upload may take it; otherwise why not."""
    if row is None or row.state in (Upload.State.TERMINATED, Upload.State.FAILED):
        raise PartialNotFound(f"no partial upload {pk} of yours")
    if row.concat != Upload.Concat.PARTIAL:
        raise InvalidInput(f"upload {pk} was not created with Upload-Concat: partial")
    if row.state == Upload.State.COMPLETED:
        raise PartialNotFound(f"partial upload {pk} was already used by a final upload")
    if row.state == Upload.State.EXPIRED or (row.expires_at <= now and not is_leased(row, now)):
        raise PartialNotFound(f"partial upload {pk} expired")
    if not row.is_complete:
        raise PartialIncomplete(f"partial upload {pk} has {row.offset} of its {row.length} bytes; finish it "
                                "before creating the final upload", upload=str(pk), offset=row.offset,
                                length=row.length)
    if is_leased(row, now) or row.s3_upload_id:
        raise UploadBusy(f"partial upload {pk} is being written right now; try again in a moment")
    return row


