"""Vault blobs in storage: where they go, writing them encrypted, reading them back.

Keys are `<user-id>/vault/...` with the media or upload id and a random suffix: never a
name or an extension. Every blob is in the chunked format of gallery.vault.crypto, written
straight from a stream of plaintext pieces (local disk: a temporary name in the same
directory, fsynced, then renamed; S3: boto3's upload_fileobj, multipart past 8 MiB), so no
plaintext is written anywhere on the way.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gallery.storage import is_s3, media_storage, s3_client
from gallery.vault import crypto

VAULT = "vault"
READ_CHUNK = 1024 * 1024


def original_key(*, user_id, media_id) -> str:
    return f"{user_id}/{VAULT}/originals/{media_id}-{secrets.token_hex(8)}"


def variant_key(*, user_id, media_id) -> str:
    return f"{user_id}/{VAULT}/variants/{media_id}/{secrets.token_hex(8)}"


def upload_keys(*, user_id, upload_id) -> tuple[str, str]:
    """(target, part) keys of a vault tus upload's CTR-encrypted bytes."""
    base = f"{user_id}/{VAULT}/uploads/{upload_id}"
    return base, base + ".part"


class _Reader:
    """A file-like view of an iterator of bytes (what boto3's upload_fileobj reads)."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self.pieces = iter(pieces)
        self.buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            piece = next(self.pieces, None)
            if piece is None:
                break
            self.buffer += piece
        if size < 0:
            size = len(self.buffer)
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out


def write_blob(key: str, pieces: Iterable[bytes]) -> int:
    """Store the bytes `pieces` yields at `key` (a new key: never an overwrite); returns the size."""
    storage = media_storage()
    if is_s3(storage):
        counted = _Counted(pieces)
        s3_client(storage).upload_fileobj(_Reader(counted), storage.bucket_name, storage._normalize_name(key))
        return counted.total
    path = Path(storage.path(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    total = 0
    try:
        with open(temporary, "wb") as out:
            for piece in pieces:
                out.write(piece)
                total += len(piece)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return total


class _Counted:
    def __init__(self, pieces: Iterable[bytes]) -> None:
        self.pieces, self.total = pieces, 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.pieces:
            self.total += len(piece)
            yield piece


def iter_blob(key: str, first: int = 0) -> Iterator[bytes]:
    """The stored bytes at `key` from `first` on, in pieces of about 1 MiB."""
    storage = media_storage()
    if is_s3(storage):
        extra = {"Range": f"bytes={first}-"} if first else {}
        body = s3_client(storage).get_object(Bucket=storage.bucket_name, Key=storage._normalize_name(key),
                                             **extra)["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()
        return
    with storage.open(key, "rb") as fh:
        fh.seek(first)
        while piece := fh.read(READ_CHUNK):
            yield piece


def read_blob(key: str) -> bytes:
    return b"".join(iter_blob(key))


def encrypt_to(key: str, *, file_key: bytes, media_id, level: str, size: int, pieces: Iterable[bytes]) -> int:
    """Encrypt `size` plaintext bytes into a new blob at `key`; returns the stored size."""
    file_id = crypto.blob_file_id(media_id, level)
    return write_blob(key, crypto.encrypt_chunks(file_key, file_id, size, pieces))


def decrypt_from(key: str, *, file_key: bytes, media_id, level: str) -> Iterator[bytes]:
    """The whole plaintext of a vault blob, chunk by chunk (each one checked)."""
    file_id = crypto.blob_file_id(media_id, level)
    stream = iter_blob(key)
    head = bytearray()
    for piece in stream:
        head += piece
        if len(head) >= crypto.HEADER_SIZE:
            break
    header = crypto.header_parse(bytes(head))
    rest = bytes(head[crypto.HEADER_SIZE:])

    def sealed() -> Iterator[bytes]:
        yield rest
        yield from stream

    if header.size == 0:
        _check_empty(file_key, file_id, header, sealed())
        return
    yield from crypto.decrypt_span(file_key, file_id, header, 0, header.size - 1, sealed())


def _check_empty(file_key: bytes, file_id: bytes, header: crypto.Header, sealed: Iterable[bytes]) -> None:
    crypto.decrypt_chunk(file_key, file_id, header, 0, b"".join(sealed))


def file_pieces(path: Path | str) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while piece := fh.read(READ_CHUNK):
            yield piece


def delete_blobs(keys: Iterable[str]) -> None:
    storage = media_storage()
    for key in keys:
        if key:
            storage.delete(key)


# --- The metadata blob ---------------------------------------------------------------------
META_LEVEL = "meta"


def meta_seal(*, file_key: bytes, media_id: uuid.UUID | str, meta: dict[str, Any]) -> bytes:
    data = json.dumps(meta, separators=(",", ":"), sort_keys=True, default=str).encode("utf-8")
    return crypto.encrypt_bytes(file_key, crypto.blob_file_id(media_id, META_LEVEL), data)


def meta_open(*, file_key: bytes, media_id: uuid.UUID | str, sealed: bytes) -> dict[str, Any]:
    data = crypto.decrypt_bytes(file_key, crypto.blob_file_id(media_id, META_LEVEL), bytes(sealed))
    return json.loads(data.decode("utf-8"))
