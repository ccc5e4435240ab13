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

from gallery.exceptions import (ChecksumMismatch, FinalUploadReadOnly, InvalidInput, NotFound, OffsetMismatch,
                                PartialIncomplete, PartialNotFound, StorageUnavailable, TooLarge, UploadBusy,
                                UploadExpired)
from gallery.models import Album, Media, Upload, User
from gallery.services import IngestResult, clean_filename, media_record
from gallery.storage import is_s3, media_storage, original_key
from gallery.uploads import (MiB, S3_MAX_PARTS, STORAGE_ERRORS, Blobs, blobs_delete, fsync_dir, is_leased,
                             metadata_file_date, part_size_for, s3_client, upload_close, upload_expiry, upload_reserve,
                             uploads_prefix)

log = logging.getLogger(__name__)

VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "expiration", "checksum", "termination", "concatenation")
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "md5": hashlib.md5, "sha256": hashlib.sha256}
READ_CHUNK = 1024 * 1024
LEASE_SECONDS = 120
# A writer renews its lease this often and stops writing well before it could lapse, so
# clocks of different servers may disagree by up to LEASE_MARGIN without harm.
LEASE_RENEW_SECONDS = 20
LEASE_MARGIN = 40
HASH_BACKLOG = 8
FLUSH_EVERY = 64 * 1024 * 1024
MAX_PARTIALS = 1000
# S3 parts: every one but the last at least 5 MiB; a copied part at most 5 GiB.
S3_MIN_PART = 5 * MiB
S3_MAX_COPY_PART = 5 * 2**30


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
                  metadata: dict[str, str] | None = None, concat: str = Upload.Concat.NONE) -> Upload:
    """Create a tus upload of `length` bytes (a partial one with `concat="partial"`),
    reserving them against the owner's quota."""
    if concat not in (Upload.Concat.NONE, Upload.Concat.PARTIAL):
        raise InvalidInput("only a partial upload is created with its length; a final one is concatenated")
    _check_max_size(length)
    part_size = part_size_for(length, settings.TUS_S3_PART_SIZE) if is_s3() else 0
    return upload_reserve(owner=owner, kind=Upload.Kind.TUS, length=length, filename=filename, filetype=filetype,
                          album=album, metadata=metadata, part_size=part_size, concat=concat)


def _check_max_size(length: int) -> None:
    if length > settings.TUS_MAX_SIZE:
        raise TooLarge(f"{length} bytes is more than this server accepts ({settings.TUS_MAX_SIZE})",
                       max_size=settings.TUS_MAX_SIZE)


def upload_append(*, upload: Upload, offset: int, stream: IO[bytes] | None, checksum: Checksum | None = None,
                  declared_length: int | None = None) -> AppendResult:
    """Append a PATCH body at `offset`; completes the upload when the last byte arrives.

    `declared_length` is the body's Content-Length when known: a body that ends before it
    was cut short. Raises OffsetMismatch, UploadBusy, ChecksumMismatch, UploadExpired;
    FinalUploadReadOnly for a body sent to a final upload. `stream=None` only finishes an
    upload whose bytes all arrived (what HEAD and cleanup do after an interrupted completion).
    """
    if upload.concat == Upload.Concat.FINAL and stream is not None:
        raise FinalUploadReadOnly("a final upload is made of its partial uploads; it takes no PATCH")
    if declared_length is not None and offset + declared_length > upload.length:
        raise InvalidInput(f"the body would take the upload past its length ({upload.length})")
    row, lease = _lease_take(upload_id=upload.pk, offset=offset)
    if lease is None:  # already complete: a client repeating its last PATCH
        return AppendResult(upload=row, media=row.media, created=False)
    try:
        # A partial's SHA-256 is never needed: the final's is taken from the assembled bytes.
        hasher = running_hashes.get(row.pk, offset) if row.concat == Upload.Concat.NONE else None
        if row.concat != Upload.Concat.FINAL and (row.offset < row.length or row.length == 0):
            received = _receive(row=row, lease=lease, stream=stream, hasher=hasher, checksum=checksum,
                                declared_length=declared_length)
            row.offset += received
            if hasher is not None:
                running_hashes.put(row.pk, row.offset, hasher)
        if row.offset < row.length:
            return AppendResult(upload=row)
        result = _complete(row=row, hasher=running_hashes.get(row.pk, row.offset), lease=lease)
        row.refresh_from_db()
        if result is None:  # a finished partial: no media until a final upload takes it
            return AppendResult(upload=row)
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


def _complete(*, row: Upload, hasher, lease: _Lease) -> IngestResult | None:
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
        sha256 = _concat_assemble(row, lease)
    elif is_s3(storage):
        _s3_complete(row)
    else:
        _local_complete(row)
    if sha256 is None:
        sha256 = hasher.hexdigest() if hasher is not None else _sha256_of_key(row.target_key)
    with transaction.atomic():
        locked = Upload.objects.select_for_update(of=("self",)).select_related("owner", "album").get(pk=row.pk)
        if locked.state == Upload.State.COMPLETED:
            return IngestResult(media=locked.media, created=False)
        if locked.state != Upload.State.ACTIVE:
            raise NotFound("no such upload")
        result = media_record(owner=locked.owner, media_id=locked.new_media_id, key=locked.target_key,
                              size=locked.length, sha256=sha256, filename=locked.filename,
                              content_type=locked.filetype, reserved=locked.length, album=locked.album,
                              file_modified_at=metadata_file_date(locked.metadata))
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
    running_hashes.drop(row.pk)
    log.info("upload %s complete: media %s (%s)", row.pk, result.media.pk, "new" if result.created else "duplicate")
    return result


def _partial_complete(row: Upload) -> None:
    """A partial's bytes made one blob at its target key (S3: its multipart upload completed)."""
    if is_s3():
        _s3_complete(row)
        if row.s3_upload_id:
            Upload.objects.filter(pk=row.pk, state=Upload.State.ACTIVE).update(s3_upload_id="", parts=[])
    else:
        path = Path(media_storage().path(row.part_key))
        if not path.exists() or path.stat().st_size != row.length:
            raise StorageUnavailable(f"the part file of partial upload {row.pk} is missing or has the wrong size")
    running_hashes.drop(row.pk)
    log.info("partial upload %s complete: waiting for a final upload", row.pk)


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
                 checksum: Checksum | None = None, declared_length: int | None = None,
                 concat: str = Upload.Concat.NONE) -> AppendResult:
    """Creation, with its first bytes when the request carries them (creation-with-upload).

    The upload exists even when the first bytes are refused (checksum): the client goes on
    from the offset it is told, as after any failed PATCH.
    """
    upload = upload_create(owner=owner, length=length, filename=filename, filetype=filetype, album=album,
                           metadata=metadata, concat=concat)
    if stream is None and length > 0:
        return AppendResult(upload=upload)
    try:
        return upload_append(upload=upload, offset=0, stream=stream or io.BytesIO(b""), checksum=checksum,
                             declared_length=declared_length)
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
        _check_max_size(total)
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
        return upload_append(upload=final, offset=total, stream=None)
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
                upload_append(upload=partial, offset=partial.length, stream=None)
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


def _concat_assemble(row: Upload, lease: _Lease) -> str | None:
    """Write a final upload's partials, in order, to its original's key. Returns the SHA-256
    when the bytes passed through us (None when S3 copied them: the caller reads them once)."""
    pieces = [p for p in row.partials if p["size"] > 0]
    sha256 = _s3_concat(row, pieces, lease) if is_s3() else _local_concat(row, pieces, lease)
    log.info("final upload %s assembled from %s partials", row.pk, len(row.partials))
    return sha256


def _local_concat(row: Upload, pieces: list[dict[str, Any]], lease: _Lease) -> str:
    """One streamed copy into the final's part file, fsynced, then the usual rename. An
    earlier attempt cut short is simply done again (the partials stay until the media exists)."""
    storage = media_storage()
    part = Path(storage.path(row.part_key))
    part.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    hashing = _Hashing([digest])
    try:
        with open(part, "wb") as out:
            for piece in pieces:
                with open(storage.path(piece["key"]), "rb") as source:
                    if os.fstat(source.fileno()).st_size != piece["size"]:
                        raise StorageUnavailable(f"partial upload {piece['id']} does not have its "
                                                 f"{piece['size']} bytes")
                    while chunk := source.read(READ_CHUNK):
                        lease.check()
                        hashing.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    finally:
        hashing.finish()
    _local_complete(row)
    return digest.hexdigest()


def _s3_concat(row: Upload, pieces: list[dict[str, Any]], lease: _Lease) -> str | None:
    """S3 copies when it can: one CopyObject for a single partial, UploadPartCopy into a new
    multipart upload when every partial but the last is a valid part (5 MiB or more);
    otherwise (small partials) the bytes pass through us, in parts of the final's part size."""
    client, bucket = s3_client()
    sizes = [p["size"] for p in pieces]
    ranges = _copy_ranges(pieces)
    sha256 = None
    if len(pieces) == 1 and sizes[0] <= S3_MAX_COPY_PART:
        lease.check()
        client.copy_object(Bucket=bucket, Key=row.target_key, CopySource={"Bucket": bucket, "Key": pieces[0]["key"]},
                           MetadataDirective="REPLACE", ContentType=row.filetype or "application/octet-stream")
    elif pieces and all(size >= S3_MIN_PART for size in sizes[:-1]) and len(ranges) <= S3_MAX_PARTS:
        upload_id = _s3_multipart_start(row, lease)
        parts = []
        for number, (key, first, last) in enumerate(ranges, start=1):
            lease.check()
            answer = client.upload_part_copy(Bucket=bucket, Key=row.target_key, UploadId=upload_id,
                                             PartNumber=number, CopySource={"Bucket": bucket, "Key": key},
                                             CopySourceRange=f"bytes={first}-{last}")
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        client.complete_multipart_upload(Bucket=bucket, Key=row.target_key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
    else:
        sha256 = _s3_concat_through(row, pieces, lease)
    size = client.head_object(Bucket=bucket, Key=row.target_key)["ContentLength"]
    if size != row.length:
        raise StorageUnavailable(f"final upload {row.pk} assembled {size} bytes, not {row.length}")
    return sha256


def _copy_ranges(pieces: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(key, first, last) of each part to copy: a partial larger than a copied part may be
    is copied in equal ranges (each well above the 5 MiB minimum)."""
    ranges = []
    for piece in pieces:
        count = -(-piece["size"] // S3_MAX_COPY_PART)
        step = -(-piece["size"] // count)
        for first in range(0, piece["size"], step):
            ranges.append((piece["key"], first, min(first + step, piece["size"]) - 1))
    return ranges


def _s3_multipart_start(row: Upload, lease: _Lease) -> str:
    """A new multipart upload to the final's key, recorded at once (cleanup aborts it if this
    attempt dies); an earlier attempt's is aborted first."""
    client, bucket = s3_client()
    if row.s3_upload_id:
        blobs_delete(Blobs(multipart=(row.target_key, row.s3_upload_id)))
    content_type = row.filetype or "application/octet-stream"
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=row.target_key, ContentType=content_type)["UploadId"]
    mine = Upload.objects.filter(pk=row.pk, lease_token=lease.token, state=Upload.State.ACTIVE)
    if not mine.update(s3_upload_id=upload_id):
        client.abort_multipart_upload(Bucket=bucket, Key=row.target_key, UploadId=upload_id)
        raise UploadBusy("another request took over this upload")
    row.s3_upload_id = upload_id
    return upload_id


def _s3_concat_through(row: Upload, pieces: list[dict[str, Any]], lease: _Lease) -> str:
    """Read the partials and write them as parts (or one PutObject when the whole fits in a
    part), hashing on the way."""
    client, bucket = s3_client()
    part_size = row.part_size or part_size_for(row.length, settings.TUS_S3_PART_SIZE)
    digest = hashlib.sha256()
    buffer = bytearray()
    parts: list[dict[str, Any]] = []
    upload_id = ""

    def send_part() -> None:
        nonlocal upload_id
        upload_id = upload_id or _s3_multipart_start(row, lease)
        lease.check()
        number = len(parts) + 1
        answer = client.upload_part(Bucket=bucket, Key=row.target_key, UploadId=upload_id, PartNumber=number,
                                    Body=bytes(buffer))
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        buffer.clear()

    for piece in pieces:
        received = 0
        for chunk in client.get_object(Bucket=bucket, Key=piece["key"])["Body"].iter_chunks(READ_CHUNK):
            lease.check()
            digest.update(chunk)
            buffer += chunk
            received += len(chunk)
            if len(buffer) >= part_size:
                send_part()
        if received != piece["size"]:
            raise StorageUnavailable(f"partial upload {piece['id']} has {received} bytes, not {piece['size']}")
    if upload_id:
        if buffer:
            send_part()
        client.complete_multipart_upload(Bucket=bucket, Key=row.target_key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
    else:
        lease.check()
        client.put_object(Bucket=bucket, Key=row.target_key, Body=bytes(buffer),
                          ContentType=row.filetype or "application/octet-stream")
    return digest.hexdigest()
