"""Where blobs live: one Django storage alias ("media"), keys laid out per user and bucket.

Every key starts with `<user-id>/library/` or `<user-id>/vault/`, the two logical buckets
a user has. The storage itself is FileSystemStorage or django-storages' S3Storage,
chosen by STORAGE_BACKEND in settings.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.storage import Storage, storages

LIBRARY = "library"
HASH_CHUNK = 1024 * 1024
# What a blob operation may raise when the storage fails (S3 client errors, disk errors).
STORAGE_ERRORS = (ClientError, BotoCoreError, OSError)


def media_storage() -> Storage:
    return storages["media"]


def _safe_ext(filename: str) -> str:
    ext = os.path.splitext(filename)[1].lower()
    # Only short alphanumeric extensions survive into a key; anything else is dropped.
    return ext if re.fullmatch(r"\.[a-z0-9]{1,8}", ext) else ""


def original_key(*, user_id: uuid.UUID, media_id: uuid.UUID, filename: str, bucket: str = LIBRARY) -> str:
    return f"{user_id}/{bucket}/originals/{media_id}{_safe_ext(filename)}"


def variant_key(*, user_id: uuid.UUID, media_id: uuid.UUID, level: str, ext: str, bucket: str = LIBRARY) -> str:
    return f"{user_id}/{bucket}/variants/{media_id}/{level}.{ext}"


def is_s3(storage: Storage | None = None) -> bool:
    storage = storage or media_storage()
    # On the class: the instance's `connection` property would build a boto3 resource.
    return hasattr(storage, "bucket_name") and hasattr(type(storage), "connection")


_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


def s3_client(storage: Storage):
    """The boto3 client of an S3 storage, one per process.

    django-storages keeps a boto3 resource per thread (resources are not thread-safe), and
    under ASGI every request runs in a new thread, where building one costs tens of
    milliseconds. Clients are thread-safe: one serves every thread.
    """
    with _clients_lock:
        client = _clients.get(storage)
        if client is None:
            client = _clients[storage] = storage.connection.meta.client
        return client


def presign_url(method: str, *, params: dict, expires_in: int) -> str:
    """A presigned S3 URL that clients outside our network can use.

    SigV4 signs the host, so a URL for phones and browsers must be signed for the public
    endpoint (S3_PUBLIC_ENDPOINT_URL, e.g. https://s3.example.org) rather than the one the
    server talks to (http://minio:9000 in compose). Signing needs no network call.
    """
    storage = media_storage()
    client = s3_client(storage)
    public = settings.S3_PUBLIC_ENDPOINT_URL
    if public and public.rstrip("/") != (client.meta.endpoint_url or "").rstrip("/"):
        client = _public_client(public, client.meta.region_name, storage.access_key, storage.secret_key)
    return client.generate_presigned_url(method, Params={"Bucket": storage.bucket_name, **params},
                                         ExpiresIn=expires_in)


@functools.lru_cache(maxsize=4)
def _public_client(endpoint: str, region: str, access_key: str, secret_key: str):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


# --- Reading and finishing blobs -------------------------------------------------------------
def sha256_of(stream: IO[bytes]) -> str:
    """SHA-256 of a stream read from where it stands to its end (the one hashing loop)."""
    digest = hashlib.sha256()
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def blob_sha256(key: str) -> str:
    """SHA-256 of a stored blob, read once in chunks (S3: one streamed GET, never a spooled copy)."""
    return blob_storage_sha256(media_storage(), key)


def blob_head(key: str, size: int, count: int) -> bytes:
    """The first `count` bytes of a stored blob of `size` bytes, without reading the rest (S3:
    one ranged GET)."""
    if size <= 0:
        return b""
    storage = media_storage()
    if is_s3(storage):
        response = s3_client(storage).get_object(Bucket=storage.bucket_name, Key=key,
                                                 Range=f"bytes=0-{min(size, count) - 1}")
        body = response["Body"]
        try:
            return body.read(count)
        finally:
            body.close()
    with storage.open(key, "rb") as fh:
        return fh.read(count)


def multipart_complete(*, key: str, upload_id: str, parts: list[dict]) -> int:
    """Complete an S3 multipart upload (parts as S3 wants them: PartNumber, ETag) and return
    the size of the object that is there now. An earlier attempt that completed it already is
    fine: the size tells the caller whether the bytes are the ones announced."""
    storage = media_storage()
    client, bucket = s3_client(storage), storage.bucket_name
    try:
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except client.exceptions.NoSuchUpload:
        pass
    return client.head_object(Bucket=bucket, Key=key)["ContentLength"]


# --- Every blob of a storage (verify, migrate_storage, deleteuser --purge) -----------------
@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    modified: datetime  # aware, UTC


def blob_list(storage: Storage, prefix: str = "") -> Iterator[BlobInfo]:
    """Every object of `storage` whose key starts with `prefix`, in key order per page (S3:
    one LIST per 1000 keys; local disk: a walk of the tree). Keys use "/" on every system."""
    if is_s3(storage):
        client = s3_client(storage)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket_name, Prefix=prefix):
            for item in page.get("Contents", []):
                yield BlobInfo(item["Key"], item["Size"], item["LastModified"])
        return
    root = Path(storage.location)
    start = root / prefix if prefix.endswith("/") else root
    for dirpath, dirnames, filenames in os.walk(start):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            key = path.relative_to(root).as_posix()
            if not key.startswith(prefix):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # deleted while we walked
                continue
            yield BlobInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, tz=dt_timezone.utc))


def blob_size(storage: Storage, key: str) -> int | None:
    """The size of a stored blob, None when there is none (S3: one HEAD)."""
    if is_s3(storage):
        client = s3_client(storage)
        try:
            return client.head_object(Bucket=storage.bucket_name, Key=key)["ContentLength"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
    try:
        return os.path.getsize(storage.path(key))
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def blob_reader(storage: Storage, key: str) -> Iterator[IO[bytes]]:
    """A stream of a stored blob, read in chunks by the caller (S3: one streamed GET, never a
    spooled copy, unlike Storage.open)."""
    if is_s3(storage):
        body = s3_client(storage).get_object(Bucket=storage.bucket_name, Key=key)["Body"]
        try:
            yield body
        finally:
            body.close()
        return
    with open(storage.path(key), "rb") as fh:
        yield fh


def blob_storage_sha256(storage: Storage, key: str) -> str:
    """SHA-256 of a blob of any storage (blob_sha256 for another storage than `media`)."""
    with blob_reader(storage, key) as stream:
        return sha256_of(stream)


class _S3PartWriter:
    """A write-only stream into an S3 multipart upload: parts of `part_size` bytes, one in memory."""

    def __init__(self, client, bucket: str, key: str, content_type: str, part_size: int) -> None:
        self.client, self.bucket, self.key, self.part_size = client, bucket, key, part_size
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)["UploadId"]
        self.parts: list[dict] = []
        self.buffer = bytearray()
        self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def write(self, data: bytes) -> int:
        self.buffer += data
        self.size += len(data)
        while len(self.buffer) >= self.part_size:
            self._send(bytes(self.buffer[:self.part_size]))
            del self.buffer[:self.part_size]
        return len(data)

    def _send(self, data: bytes) -> None:
        number = len(self.parts) + 1
        etag = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
                                       Body=data)["ETag"]
        self.parts.append({"PartNumber": number, "ETag": etag})

    def finish(self) -> None:
        if self.buffer or not self.parts:
            self._send(bytes(self.buffer))
            self.buffer.clear()
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                              MultipartUpload={"Parts": self.parts})

    def abort(self) -> None:
        self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


@contextlib.contextmanager
def blob_writer(storage: Storage, key: str, *, content_type: str = "application/octet-stream",
                part_size: int = 8 * 1024 * 1024) -> Iterator[IO[bytes]]:
    """A stream that becomes the blob `key` when the block ends without an error, and nothing
    otherwise (local: a temporary file renamed into place after fsync; S3: a multipart upload,
    completed or aborted). Memory: one S3 part at most."""
    if is_s3(storage):
        writer = _S3PartWriter(s3_client(storage), storage.bucket_name, key, content_type, part_size)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.finish()
        return
    path = Path(storage.path(key))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".writing-")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def blobs_delete_prefix(storage: Storage, prefix: str) -> int:
    """Delete every object under `prefix` (and, on S3, abort the multipart uploads there);
    returns how many objects went. For a whole user: prefix `<user-id>/`."""
    if not prefix.endswith("/") or prefix == "/":
        raise ValueError(f"refusing to delete under {prefix!r}: a prefix is a folder, never the root")
    deleted = 0
    if is_s3(storage):
        client, bucket = s3_client(storage), storage.bucket_name
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=item["Key"], UploadId=item["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
        return deleted
    folder = Path(storage.location) / prefix
    if not folder.is_dir():
        return 0
    deleted = sum(1 for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder)
    return deleted
