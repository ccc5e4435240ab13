"""tus 1.0.0 uploads: the state machine and the byte appends. HTTP lives in media_api.tus_views.

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
- S3: a multipart upload to the original's key, parts of `part_size` or more. What is left
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
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import threading
import time
import uuid
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gallery.exceptions import (ChecksumMismatch, InvalidInput, NotFound, OffsetMismatch, StorageUnavailable,
                                TooLarge, UploadBusy, UploadExpired)
from gallery.models import Album, Media, Upload, User
from gallery.services import IngestResult, media_record
from gallery.storage import is_s3, media_storage
from gallery.uploads import (STORAGE_ERRORS, fsync_dir, is_leased, part_size_for, s3_client, upload_close,
                             upload_expiry, upload_reserve, uploads_prefix)

log = logging.getLogger(__name__)

VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "expiration", "checksum", "termination")
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "md5": hashlib.md5, "sha256": hashlib.sha256}
READ_CHUNK = 1024 * 1024
LEASE_SECONDS = 120
# A writer renews its lease this often and stops writing well before it could lapse, so
# clocks of different servers may disagree by up to LEASE_MARGIN without harm.
LEASE_RENEW_SECONDS = 20
LEASE_MARGIN = 40
HASH_BACKLOG = 8
FLUSH_EVERY = 64 * 1024 * 1024


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes


@dataclass
class AppendResult:
    upload: Upload
    media: Media | None = None
    created: bool = False


# --- Running hashes ----------------------------------------------------------------------
class _RunningHashes:
    """SHA-256 objects of the uploads this process receives, each valid at one offset."""

    def __init__(self, capacity: int = 4096) -> None:
        self._items: OrderedDict[uuid.UUID, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.capacity = capacity

    def get(self, upload_id: uuid.UUID, offset: int):
        """A copy of the hash at `offset` (the stored one stays valid if this PATCH fails)."""
        if offset == 0:
            return hashlib.sha256()
        with self._lock:
            item = self._items.get(upload_id)
            return item[1].copy() if item is not None and item[0] == offset else None

    def put(self, upload_id: uuid.UUID, offset: int, hasher) -> None:
        with self._lock:
            self._items[upload_id] = (offset, hasher)
            self._items.move_to_end(upload_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def drop(self, upload_id: uuid.UUID) -> None:
        with self._lock:
            self._items.pop(upload_id, None)


running_hashes = _RunningHashes()


class _Hashing:
    """Feeds a PATCH's hashes (running SHA-256, Upload-Checksum) from a thread of its own.

    hashlib releases the GIL, so hashing overlaps with receiving and writing instead of
    adding to them; chunks are hashed in order, at most HASH_BACKLOG behind the writes.
    """

    def __init__(self, hashers: list[Any]) -> None:
        self.hashers = [h for h in hashers if h is not None]
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-hash") if self.hashers else None
        self.pending: deque[Future] = deque()

    def update(self, chunk: bytes) -> None:
        if self.pool is None:
            return
        self.pending.append(self.pool.submit(self._update, chunk))
        while len(self.pending) > HASH_BACKLOG:
            self.pending.popleft().result()

    def _update(self, chunk: bytes) -> None:
        for hasher in self.hashers:
            hasher.update(chunk)

    def finish(self) -> None:
        if self.pool is None:
            return
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)


# --- The lease ---------------------------------------------------------------------------
class _Lease:
    def __init__(self, upload_id: uuid.UUID, token: str) -> None:
        self.upload_id, self.token = upload_id, token
        self.renewed = time.monotonic()

    def check(self) -> None:
        """Renew the lease when due; raise UploadBusy when it is no longer ours."""
        if time.monotonic() - self.renewed < LEASE_RENEW_SECONDS:
            return
        if time.monotonic() - self.renewed > LEASE_SECONDS - LEASE_MARGIN:
            raise UploadBusy("this PATCH stalled and lost its hold on the upload")
        mine = Upload.objects.filter(pk=self.upload_id, lease_token=self.token, state=Upload.State.ACTIVE)
        if not mine.update(lease_until=timezone.now() + timedelta(seconds=LEASE_SECONDS)):
            raise UploadBusy("another request took over this upload")
        self.renewed = time.monotonic()

    def release(self) -> None:
        Upload.objects.filter(pk=self.upload_id, lease_token=self.token).update(lease_token="", lease_until=None)


def _lease_take(*, upload_id: uuid.UUID, offset: int) -> tuple[Upload, _Lease]:
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
        if row.expires_at <= now and not busy and not row.is_complete:
            expired = True  # (an upload with every byte here is finished, never expired)
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
    return row, _Lease(row.pk, row.lease_token)


# --- Sinks: where a PATCH's bytes go -----------------------------------------------------
class _LocalSink:
    """Appends to the part file on local disk."""

    def __init__(self, upload: Upload, lease: _Lease) -> None:
        self.lease = lease
        path = Path(media_storage().path(upload.part_key))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "r+b" if path.exists() else "w+b")
        size = os.fstat(self.file.fileno()).st_size
        if size < upload.offset:
            self.file.close()
            raise StorageUnavailable(f"the part file of upload {upload.pk} is shorter than its offset")
        self.file.truncate(upload.offset)  # whatever lies past the offset was never committed
        self.file.seek(upload.offset)
        # Writeback is started while bytes still arrive, so the fsync before the commit
        # has little left to do instead of stalling the PATCH for the whole file.
        self.unflushed = 0
        self.flushing: Future | None = None
        self.flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-flush")

    def write(self, data: bytes) -> None:
        self.lease.check()
        self.file.write(data)
        self.unflushed += len(data)
        if self.unflushed >= FLUSH_EVERY and (self.flushing is None or self.flushing.done()):
            self.file.flush()
            self.flushing = self.flusher.submit(os.fdatasync, self.file.fileno())
            self.unflushed = 0

    def _stop_flushing(self) -> None:
        self.flusher.shutdown(wait=True)
        if self.flushing is not None and self.flushing.exception() is not None:
            raise self.flushing.exception()

    def close(self) -> dict[str, Any]:
        self.file.flush()
        self._stop_flushing()
        os.fsync(self.file.fileno())
        self.file.close()
        return {}

    def discard(self) -> None:
        # No truncating here: if the lease was lost, another PATCH may own the file now. The
        # next PATCH truncates to the committed offset anyway.
        self.flusher.shutdown(wait=True)
        if not self.file.closed:
            self.file.close()

    def after_commit(self) -> None:
        pass

    def after_failed_commit(self) -> None:
        pass


class _S3Sink:
    """Cuts the bytes into multipart parts; stages what is left as the tail object."""

    def __init__(self, upload: Upload, lease: _Lease) -> None:
        self.upload, self.lease = upload, lease
        self.client, self.bucket = s3_client()
        self.part_size = upload.part_size
        self.upload_id = upload.s3_upload_id
        self.parts: list[dict[str, Any]] = list(upload.parts)
        self.buffer = bytearray()
        self.received = 0
        self.new_tail = ""
        self.old_tail = upload.tail_key  # consumed by this PATCH: deleted once the new state commits
        if upload.tail_key:
            body = self.client.get_object(Bucket=self.bucket, Key=upload.tail_key)["Body"]
            for chunk in body.iter_chunks(READ_CHUNK):
                self.buffer += chunk
            if len(self.buffer) != upload.tail_size:
                raise StorageUnavailable(f"the staged tail of upload {upload.pk} has {len(self.buffer)} bytes, "
                                         f"not {upload.tail_size}")

    def write(self, data: bytes) -> None:
        self.buffer += data
        self.received += len(data)
        if len(self.buffer) >= self.part_size:
            self._upload_part()

    def _upload_part(self) -> None:
        self.lease.check()
        if not self.upload_id:
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.upload.target_key,
                ContentType=self.upload.filetype or "application/octet-stream")
            self.upload_id = created["UploadId"]
            # Recorded at once, so cleanup can abort it whatever happens to this PATCH.
            mine = Upload.objects.filter(pk=self.upload.pk, lease_token=self.lease.token)
            if not mine.update(s3_upload_id=self.upload_id):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.upload.target_key,
                                                   UploadId=self.upload_id)
                raise UploadBusy("another request took over this upload")
        number = len(self.parts) + 1
        body = bytes(self.buffer)
        self.buffer.clear()
        answer = self.client.upload_part(Bucket=self.bucket, Key=self.upload.target_key, UploadId=self.upload_id,
                                         PartNumber=number, Body=body)
        self.parts.append({"number": number, "etag": answer["ETag"], "size": len(body)})

    def close(self) -> dict[str, Any]:
        final = self.upload.offset + self.received == self.upload.length
        if final and not self.upload_id:
            # The whole file is in the buffer: one PutObject, no multipart upload.
            self.lease.check()
            self.client.put_object(Bucket=self.bucket, Key=self.upload.target_key, Body=bytes(self.buffer),
                                   ContentType=self.upload.filetype or "application/octet-stream")
        elif final and self.buffer:
            self._upload_part()
        elif self.buffer:
            self.lease.check()
            self.new_tail = f"{uploads_prefix(self.upload.owner_id)}{self.upload.pk}/tail-{uuid.uuid4().hex}"
            self.client.put_object(Bucket=self.bucket, Key=self.new_tail, Body=bytes(self.buffer))
        tail_size = 0 if final else len(self.buffer)
        self.buffer = bytearray()
        return {"parts": self.parts, "tail_key": self.new_tail, "tail_size": tail_size,
                "s3_upload_id": self.upload_id}

    def discard(self) -> None:
        # Parts uploaded for a discarded chunk are overwritten by the next PATCH (same part
        # numbers) or never listed at completion; only a new tail needs deleting.
        self.buffer = bytearray()
        self.after_failed_commit()

    def after_commit(self) -> None:
        if self.old_tail:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.old_tail)
            except STORAGE_ERRORS as exc:  # an orphan for cleanup, not an error of this PATCH
                log.warning("could not delete consumed tail %s: %s", self.old_tail, exc)

    def after_failed_commit(self) -> None:
        if self.new_tail:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.new_tail)
            except STORAGE_ERRORS as exc:
                log.warning("could not delete discarded tail %s: %s", self.new_tail, exc)


# --- Services ----------------------------------------------------------------------------
def upload_create(*, owner: User, length: int, filename: str, filetype: str = "", album: Album | None = None,
                  metadata: dict[str, str] | None = None) -> Upload:
    """Create a tus upload of `length` bytes, reserving them against the owner's quota."""
    if length > settings.TUS_MAX_SIZE:
        raise TooLarge(f"{length} bytes is more than this server accepts ({settings.TUS_MAX_SIZE})",
                       max_size=settings.TUS_MAX_SIZE)
    part_size = part_size_for(length, settings.TUS_S3_PART_SIZE) if is_s3() else 0
    return upload_reserve(owner=owner, kind=Upload.Kind.TUS, length=length, filename=filename, filetype=filetype,
                          album=album, metadata=metadata, part_size=part_size)


def upload_append(*, upload: Upload, offset: int, stream: IO[bytes] | None, checksum: Checksum | None = None,
                  declared_length: int | None = None) -> AppendResult:
    """Append a PATCH body at `offset`; completes the upload when the last byte arrives.

    `declared_length` is the body's Content-Length when known: a body that ends before it
    was cut short. Raises OffsetMismatch, UploadBusy, ChecksumMismatch, UploadExpired.
    """
    if declared_length is not None and offset + declared_length > upload.length:
        raise InvalidInput(f"the body would take the upload past its length ({upload.length})")
    row, lease = _lease_take(upload_id=upload.pk, offset=offset)
    if lease is None:  # already complete: a client repeating its last PATCH
        return AppendResult(upload=row, media=row.media, created=False)
    try:
        hasher = running_hashes.get(row.pk, offset)
        if row.offset < row.length or row.length == 0:
            received = _receive(row=row, lease=lease, stream=stream, hasher=hasher, checksum=checksum,
                                declared_length=declared_length)
            row.offset += received
            if hasher is not None:
                running_hashes.put(row.pk, row.offset, hasher)
        if row.offset < row.length:
            return AppendResult(upload=row)
        result = _complete(row=row, hasher=running_hashes.get(row.pk, row.offset))
        row.refresh_from_db()
        return AppendResult(upload=row, media=result.media, created=result.created)
    except STORAGE_ERRORS as exc:
        log.exception("storage failed during PATCH of upload %s", row.pk)
        raise StorageUnavailable(f"storage failed; the upload can be resumed: {exc}") from exc
    finally:
        lease.release()


def _receive(*, row: Upload, lease: _Lease, stream: IO[bytes] | None, hasher, checksum: Checksum | None,
             declared_length: int | None) -> int:
    """Stream one body into storage and commit the new offset; returns the bytes kept."""
    sink = _S3Sink(row, lease) if is_s3() else _LocalSink(row, lease)
    verifier = CHECKSUM_ALGORITHMS[checksum.algorithm]() if checksum else None
    room = row.length - row.offset
    received, cut_short = 0, False
    hashing = _Hashing([hasher, verifier])
    try:
        while stream is not None:
            try:
                chunk = stream.read(min(READ_CHUNK, room - received + 1))
            except OSError:  # the client went away (UnreadablePostError, a reset socket)
                cut_short = True
                break
            if not chunk:
                cut_short = declared_length is not None and received < declared_length
                break
            if received + len(chunk) > room:
                raise InvalidInput(f"the body takes the upload past its length ({row.length})")
            hashing.update(chunk)
            sink.write(chunk)
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


def _complete(*, row: Upload, hasher) -> IngestResult:
    """Make the original from the received bytes and record the media (or find the one the
    owner already has with these bytes, deleting the duplicate). Safe to run again."""
    storage = media_storage()
    if is_s3(storage):
        _s3_complete(row)
    else:
        _local_complete(row)
    sha256 = hasher.hexdigest() if hasher is not None else _sha256_of_key(row.target_key)
    with transaction.atomic():
        locked = Upload.objects.select_for_update(of=("self",)).select_related("owner", "album").get(pk=row.pk)
        if locked.state == Upload.State.COMPLETED:
            return IngestResult(media=locked.media, created=False)
        if locked.state != Upload.State.ACTIVE:
            raise NotFound("no such upload")
        result = media_record(owner=locked.owner, media_id=locked.new_media_id, key=locked.target_key,
                              size=locked.length, sha256=sha256, filename=locked.filename,
                              content_type=locked.filetype, reserved=locked.length, album=locked.album)
        locked.state = Upload.State.COMPLETED
        locked.media = result.media
        locked.sha256 = sha256
        locked.expires_at = upload_expiry()
        locked.part_key = locked.tail_key = ""
        locked.save(update_fields=["state", "media", "sha256", "expires_at", "part_key", "tail_key", "updated_at"])
        if not result.created:
            key = locked.target_key
            transaction.on_commit(lambda: storage.delete(key))
    running_hashes.drop(row.pk)
    log.info("upload %s complete: media %s (%s)", row.pk, result.media.pk, "new" if result.created else "duplicate")
    return result


def _local_complete(row: Upload) -> None:
    storage = media_storage()
    part, final = Path(storage.path(row.part_key)), Path(storage.path(row.target_key))
    if part.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        if part.stat().st_size != row.length:
            raise StorageUnavailable(f"the part file of upload {row.pk} has the wrong size")
        os.replace(part, final)
        mode = getattr(storage, "file_permissions_mode", None)
        if mode is not None:
            os.chmod(final, mode)
        fsync_dir(final.parent)
    elif not final.exists():
        raise StorageUnavailable(f"the bytes of upload {row.pk} are missing")


def _s3_complete(row: Upload) -> None:
    client, bucket = s3_client()
    if row.s3_upload_id:
        parts = [{"PartNumber": p["number"], "ETag": p["etag"]} for p in row.parts]
        try:
            client.complete_multipart_upload(Bucket=bucket, Key=row.target_key, UploadId=row.s3_upload_id,
                                             MultipartUpload={"Parts": parts})
        except client.exceptions.NoSuchUpload:
            pass  # completed by an earlier attempt; the size check below tells
    size = client.head_object(Bucket=bucket, Key=row.target_key)["ContentLength"]
    if size != row.length:
        raise StorageUnavailable(f"upload {row.pk} assembled {size} bytes, not {row.length}")


def _sha256_of_key(key: str) -> str:
    """Hash a stored original once (the running hash was lost between processes)."""
    digest = hashlib.sha256()
    storage = media_storage()
    if is_s3(storage):
        client, bucket = s3_client()
        for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(READ_CHUNK):
            digest.update(chunk)
    else:
        with open(storage.path(key), "rb") as fh:
            while chunk := fh.read(READ_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def upload_start(*, owner: User, length: int, filename: str, filetype: str = "", album: Album | None = None,
                 metadata: dict[str, str] | None = None, stream: IO[bytes] | None = None,
                 checksum: Checksum | None = None, declared_length: int | None = None) -> AppendResult:
    """Creation, with its first bytes when the request carries them (creation-with-upload).

    The upload exists even when the first bytes are refused (checksum): the client goes on
    from the offset it is told, as after any failed PATCH.
    """
    upload = upload_create(owner=owner, length=length, filename=filename, filetype=filetype, album=album,
                           metadata=metadata)
    if stream is None and length > 0:
        return AppendResult(upload=upload)
    try:
        return upload_append(upload=upload, offset=0, stream=stream or io.BytesIO(b""), checksum=checksum,
                             declared_length=declared_length)
    except (ChecksumMismatch, InvalidInput) as exc:
        log.info("first bytes of upload %s refused: %s", upload.pk, exc.detail)
        upload.refresh_from_db()
        return AppendResult(upload=upload)
