"""Where tus bytes go: the lease that guards a writer, the sinks a PATCH streams into, the
running SHA-256, and the blob operations that finish an upload (local rename, S3 multipart
completion, assembly of a final upload from its partials). The protocol's state machine is
gallery.uploads.tus; see its docstring for the rules these pieces keep.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from gallery.exceptions import StorageUnavailable, UploadBusy
from gallery.models import Upload
from gallery.processing.filetypes import clean_media_type
from gallery.storage import is_s3, media_storage, multipart_complete
from gallery.uploads.lifecycle import (
    S3_MAX_PARTS,
    STORAGE_ERRORS,
    Blobs,
    MiB,
    blobs_delete,
    fsync_dir,
    part_size_for,
    s3_client,
    uploads_prefix,
)

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
# A PATCH body is read, hashed and written in pieces this large: each piece is a wake-up of
# the view thread and a hand-off to the hash thread, so fewer of them leave more of the two
# cores to receiving, hashing and writing.
BODY_CHUNK = 4 * 1024 * 1024
# Writes to the part file are this large at most: measured on a 2-core VM, 4 MiB writes into
# the page cache cost up to 5x the kernel time of 1 MiB ones on memory the process had not
# written to yet (a fresh server's first upload, or one right after another process's).
WRITE_CHUNK = 1024 * 1024
# Buffers a PATCH reads into in turn (when its stream can fill them): one being filled, the
# others written and waiting for the hash thread.
BODY_BUFFERS = 3
LEASE_SECONDS = 120
# A writer renews its lease this often and stops writing well before it could lapse, so
# clocks of different servers may disagree by up to LEASE_MARGIN without harm.
LEASE_RENEW_SECONDS = 20
LEASE_MARGIN = 40
# Bytes handed to the hash thread and not yet hashed, at most.
HASH_BACKLOG_BYTES = 8 * 1024 * 1024
FLUSH_EVERY = 64 * 1024 * 1024
# S3 parts: every one but the last at least 5 MiB; a copied part at most 5 GiB.
S3_MIN_PART = 5 * MiB
S3_MAX_COPY_PART = 5 * 2**30


def stored_type(upload: Upload) -> str:
    """The Content-Type an object is stored with: the client's hint, cleaned (rows from before
    the type was cleaned at creation may hold anything; S3 would refuse a CR/LF)."""
    return clean_media_type(upload.filetype) or "application/octet-stream"


class RunningHashes:
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


running_hashes = RunningHashes()


class Hashing:
    """Feeds a PATCH's hashes (running SHA-256, Upload-Checksum) from a thread of its own.

    hashlib releases the GIL, so hashing overlaps with receiving and writing instead of
    adding to them; chunks are hashed in order, at most HASH_BACKLOG_BYTES behind the writes.
    """

    def __init__(self, hashers: list[Any]) -> None:
        self.hashers = [h for h in hashers if h is not None]
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-hash") if self.hashers else None
        self.pending: deque[tuple[Future, int]] = deque()
        self.backlog = 0

    def update(self, chunk: bytes) -> None:
        if self.pool is None:
            return
        self.pending.append((self.pool.submit(self._update, chunk), len(chunk)))
        self.backlog += len(chunk)
        while self.backlog > HASH_BACKLOG_BYTES:
            self._wait_oldest()

    def settle(self, pending: int) -> None:
        """Wait until at most `pending` chunks are still to be hashed (the others are done, so
        their buffers may be filled again)."""
        while len(self.pending) > pending:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, size = self.pending.popleft()
        self.backlog -= size
        future.result()

    def _update(self, chunk: bytes) -> None:
        for hasher in self.hashers:
            hasher.update(chunk)

    def finish(self) -> None:
        if self.pool is None:
            return
        try:
            while self.pending:
                self._wait_oldest()
        finally:
            self.pool.shutdown(wait=True)


class Lease:
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


class LocalSink:
    """Appends to the part file on local disk."""

    def __init__(self, upload: Upload, lease: Lease) -> None:
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
        view = memoryview(data)
        for start in range(0, len(view), WRITE_CHUNK):
            self.file.write(view[start:start + WRITE_CHUNK])
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


class S3Sink:
    """Cuts the bytes into multipart parts; stages what is left as the tail object."""

    def __init__(self, upload: Upload, lease: Lease) -> None:
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
        while len(self.buffer) >= self.part_size:  # parts of exactly part_size, whatever the reads
            self._upload_part(self.part_size)

    def _upload_part(self, size: int | None = None) -> None:
        """The first `size` bytes of the buffer (all of it by default) as the next part."""
        self.lease.check()
        if not self.upload_id:
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.upload.target_key,
                ContentType=stored_type(self.upload))
            self.upload_id = created["UploadId"]
            # Recorded at once, so cleanup can abort it whatever happens to this PATCH.
            mine = Upload.objects.filter(pk=self.upload.pk, lease_token=self.lease.token)
            if not mine.update(s3_upload_id=self.upload_id):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.upload.target_key,
                                                   UploadId=self.upload_id)
                raise UploadBusy("another request took over this upload")
        number = len(self.parts) + 1
        body = bytes(self.buffer[:size]) if size is not None else bytes(self.buffer)
        del self.buffer[:len(body)]
        answer = self.client.upload_part(Bucket=self.bucket, Key=self.upload.target_key, UploadId=self.upload_id,
                                         PartNumber=number, Body=body)
        self.parts.append({"number": number, "etag": answer["ETag"], "size": len(body)})

    def close(self) -> dict[str, Any]:
        final = self.upload.offset + self.received == self.upload.length
        if final and not self.upload_id:
            # The whole file is in the buffer: one PutObject, no multipart upload.
            self.lease.check()
            self.client.put_object(Bucket=self.bucket, Key=self.upload.target_key, Body=bytes(self.buffer),
                                   ContentType=stored_type(self.upload))
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


def local_complete(row: Upload) -> None:
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


def s3_complete(row: Upload) -> None:
    """The multipart upload completed (when there is one) and the object's size checked."""
    if row.s3_upload_id:
        parts = [{"PartNumber": p["number"], "ETag": p["etag"]} for p in row.parts]
        size = multipart_complete(key=row.target_key, upload_id=row.s3_upload_id, parts=parts)
    else:
        client, bucket = s3_client()
        size = client.head_object(Bucket=bucket, Key=row.target_key)["ContentLength"]
    if size != row.length:
        raise StorageUnavailable(f"upload {row.pk} assembled {size} bytes, not {row.length}")


def concat_assemble(row: Upload, lease: Lease) -> str | None:
    """Write a final upload's partials, in order, to its original's key. Returns the SHA-256
    when the bytes passed through us (None when S3 copied them: the caller reads them once)."""
    pieces = [p for p in row.partials if p["size"] > 0]
    sha256 = _s3_concat(row, pieces, lease) if is_s3() else _local_concat(row, pieces, lease)
    log.info("final upload %s assembled from %s partials", row.pk, len(row.partials))
    return sha256


def _local_concat(row: Upload, pieces: list[dict[str, Any]], lease: Lease) -> str:
    """One streamed copy into the final's part file, fsynced, then the usual rename. An
    earlier attempt cut short is simply done again (the partials stay until the media exists)."""
    storage = media_storage()
    part = Path(storage.path(row.part_key))
    part.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    hashing = Hashing([digest])
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
    local_complete(row)
    return digest.hexdigest()


def _s3_concat(row: Upload, pieces: list[dict[str, Any]], lease: Lease) -> str | None:
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
                           MetadataDirective="REPLACE", ContentType=stored_type(row))
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


def _s3_multipart_start(row: Upload, lease: Lease) -> str:
    """A new multipart upload to the final's key, recorded at once (cleanup aborts it if this
    attempt dies); an earlier attempt's is aborted first."""
    client, bucket = s3_client()
    if row.s3_upload_id:
        blobs_delete(Blobs(multipart=(row.target_key, row.s3_upload_id)))
    content_type = stored_type(row)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=row.target_key, ContentType=content_type)["UploadId"]
    mine = Upload.objects.filter(pk=row.pk, lease_token=lease.token, state=Upload.State.ACTIVE)
    if not mine.update(s3_upload_id=upload_id):
        client.abort_multipart_upload(Bucket=bucket, Key=row.target_key, UploadId=upload_id)
        raise UploadBusy("another request took over this upload")
    row.s3_upload_id = upload_id
    return upload_id


def _s3_concat_through(row: Upload, pieces: list[dict[str, Any]], lease: Lease) -> str:
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
                          ContentType=stored_type(row))
    return digest.hexdigest()
