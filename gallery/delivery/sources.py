"""Where delivered bytes come from: a local file, S3 ranged GETs, or S3 through the block cache.

`source_for(storage, key, size, owner)` picks one; `body(source, decision)` yields the bytes a
range decision asks for, in chunks of at most CHUNK_SIZE. Nothing here decides who may read.
"""

from __future__ import annotations

import abc
import itertools
import logging
import sys
from collections.abc import Iterator
from contextlib import closing
from typing import BinaryIO

from django.core.files.storage import Storage

from gallery.delivery import ranges
from gallery.delivery.blobcache import BlobCache, get_cache
from gallery.processing.jpeg_gps import Patch, apply_patches
from gallery.storage import is_s3, s3_client
from gallery.vault import crypto

logger = logging.getLogger(__name__)

# Bytes held per response in flight. Each chunk costs a thread hop; at 256 KiB uvicorn
# delivered 0.66 of nginx's throughput on a 1 GiB file, at 1 MiB about the same as nginx
# (bench/stream.py).
CHUNK_SIZE = 1024 * 1024


def body(source: Source, decision: ranges.Decision) -> Iterator[bytes]:
    with source:
        if decision.multipart:
            for part in decision.parts:
                yield part.head
                yield from source.read(part.first, part.last)
            yield decision.trailer
        else:
            for first, last in decision.ranges:
                yield from source.read(first, last)


class Source(abc.ABC):
    """Bytes of one blob: `read(first, last)` yields them in chunks of at most CHUNK_SIZE."""

    local = False  # a small read costs a system call, not a request

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @abc.abstractmethod
    def read(self, first: int, last: int) -> Iterator[bytes]:
        """Bytes first..last (inclusive)."""

    def read_transient(self, first: int, last: int, piece: int = CHUNK_SIZE,
                       lead: int | None = None) -> Iterator[bytes | memoryview]:
        """The same bytes for a reader that is done with each piece before it asks for the
        next (a decrypting one): a source may then reuse one buffer for every piece, and
        read `lead` bytes first (what the reader needs for its first byte out)."""
        return self.read(first, last)


class FileSource(Source):
    local = True

    def __init__(self, storage: Storage, key: str) -> None:
        self.storage, self.key = storage, key
        self.file: BinaryIO | None = None

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def read(self, first: int, last: int) -> Iterator[bytes]:
        if self.file is None:
            self.file = self.storage.open(self.key, "rb")
        yield from _read_file(self.file, first, last, self.key)

    def read_transient(self, first: int, last: int, piece: int = CHUNK_SIZE,
                       lead: int | None = None) -> Iterator[memoryview]:
        if self.file is None:
            self.file = self.storage.open(self.key, "rb")
        self.file.seek(first)
        remaining = last - first + 1
        with memoryview(bytearray(min(piece, remaining))) as buffer:
            size = min(lead or len(buffer), len(buffer))
            while remaining > 0:
                got = self.file.readinto(buffer[:min(size, remaining)])
                size = len(buffer)
                if not got:
                    raise OSError(f"{self.key} is shorter than recorded ({remaining} bytes missing)")
                remaining -= got
                yield buffer[:got]


def _read_file(file: BinaryIO, first: int, last: int, name: str) -> Iterator[bytes]:
    file.seek(first)
    remaining = last - first + 1
    while remaining > 0:
        chunk = file.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            # The headers promised more: stop short so the server drops the connection.
            raise OSError(f"{name} is shorter than recorded ({remaining} bytes missing)")
        remaining -= len(chunk)
        yield chunk


class S3Source(Source):
    """Ranged GETs of exactly the bytes asked for (no cache)."""

    def __init__(self, storage: Storage, key: str, size: int) -> None:
        self.client = s3_client(storage)
        self.bucket = storage.bucket_name
        self.name = storage._normalize_name(key)  # the object key under the storage's location
        self.key, self.size = key, size

    def get(self, first: int, last: int) -> Iterator[bytes]:
        response = self.client.get_object(Bucket=self.bucket, Key=self.name, Range=f"bytes={first}-{last}")
        total = response.get("ContentRange", "").rpartition("/")[2]
        if total and total != "*" and int(total) != self.size:
            logger.error("delivery: %s is %s bytes in S3 but %d in the database", self.key, total, self.size)
        body = response["Body"]
        remaining = last - first + 1
        try:
            for chunk in body.iter_chunks(CHUNK_SIZE):
                chunk = chunk[:remaining]
                remaining -= len(chunk)
                yield chunk
                if remaining == 0:
                    break
        finally:
            body.close()
        if remaining:
            raise OSError(f"{self.key}: S3 sent {remaining} bytes fewer than asked")

    def read(self, first: int, last: int) -> Iterator[bytes]:
        yield from self.get(first, last)


class CachedS3Source(S3Source):
    """Reads through the block cache; blocks too big for it come straight from S3."""

    def __init__(self, storage: Storage, key: str, size: int, owner: str, cache: BlobCache) -> None:
        super().__init__(storage, key, size)
        self.owner, self.cache = owner, cache

    def read(self, first: int, last: int) -> Iterator[bytes]:
        block_size = self.cache.block_size
        indexes = range(first // block_size, last // block_size + 1)
        # Closed when the reader stops early: that ends a fetch in progress and frees its locks.
        with closing(self.cache.open_blocks(key=self.key, indexes=indexes, size=self.size, owner=self.owner,
                                            fetch=self.get)) as blocks:
            for index, handle in zip(indexes, blocks):
                block_first, block_last = self.cache.block_span(index, self.size)
                lo, hi = max(first, block_first), min(last, block_last)
                if handle is None:
                    yield from self.get(lo, hi)
                    continue
                with handle:
                    yield from _read_file(handle, lo - block_first, hi - block_first, self.key)


class PatchedSource(Source):
    """Another source's bytes with some ranges overwritten (same length): a GPS-free original."""

    def __init__(self, inner: Source, patches: list[Patch]) -> None:
        self.inner, self.patches = inner, patches

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)

    def read(self, first: int, last: int) -> Iterator[bytes]:
        position = first
        for chunk in self.inner.read(first, last):
            yield apply_patches(chunk, position, self.patches)
            position += len(chunk)


def source_for(storage: Storage, *, key: str, size: int, owner: str) -> Source:
    """Local file; S3 through the block cache when it is on (blocks counted to `owner`); S3."""
    if not is_s3(storage):
        return FileSource(storage, key)
    cache = get_cache()
    if cache is None:
        return S3Source(storage, key, size)
    return CachedS3Source(storage, key, size, owner, cache)


# Decrypted-piece buffers a VaultSource keeps for reuse (the read-ahead holds up to three
# pieces, the server one or two more).
KEPT_BUFFERS = 8
# What VaultSource reads at a time: 16 sealed chunks, 1 MiB of plaintext.
SEALED_PIECE = (CHUNK_SIZE // crypto.CHUNK_SIZE) * (crypto.CHUNK_SIZE + crypto.TAG_SIZE)


class VaultSource(Source):
    """A vault blob's plaintext: reads the sealed chunks a range touches from the blob's own
    source (so the block cache only ever holds ciphertext) and decrypts those alone."""

    def __init__(self, inner: Source, *, file_key: bytes, file_id: bytes, size: int) -> None:
        self.inner, self.file_key, self.file_id, self.size = inner, file_key, file_id, size
        self.header: crypto.Header | None = None
        self.buffers: list[bytearray] = []

    def __enter__(self) -> VaultSource:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)

    def _checked(self, head: bytes) -> crypto.Header:
        header = crypto.header_parse(head)
        if header.chunk_size != crypto.CHUNK_SIZE or header.size != self.size:
            raise crypto.VaultCryptoError("the vault blob does not match its record")
        return header

    def read(self, first: int, last: int) -> Iterator[bytes]:
        if last < first:
            return
        layout = crypto.Header(chunk_size=crypto.CHUNK_SIZE, size=self.size, prefix=b"")
        start = layout.chunk_span(first // crypto.CHUNK_SIZE)[0]
        end_first, end_length = layout.chunk_span(last // crypto.CHUNK_SIZE)
        end = end_first + end_length - 1
        if self.header is None and start == crypto.HEADER_SIZE and not self.inner.local:
            # The header and the first chunks in one read (one GET on S3).
            pieces = iter(self.inner.read(0, end))
            head = bytearray()
            while len(head) < crypto.HEADER_SIZE:
                piece = next(pieces, None)
                if piece is None:
                    raise crypto.VaultCryptoError("the vault blob is shorter than its header")
                head += piece
            self.header = self._checked(bytes(head[:crypto.HEADER_SIZE]))
            sealed = itertools.chain([bytes(head[crypto.HEADER_SIZE:])], pieces)
        else:
            if self.header is None:
                self.header = self._checked(b"".join(self.inner.read(0, crypto.HEADER_SIZE - 1)))
            # Whole sealed chunks per piece, read into one buffer: decrypt_span copies nothing.
            # The first chunk alone first: the time to first byte is one chunk's read.
            sealed = self.inner.read_transient(start, end, SEALED_PIECE, lead=crypto.CHUNK_SIZE + crypto.TAG_SIZE)
        yield from crypto.decrypt_span(self.file_key, self.file_id, self.header, first, last, sealed,
                                       new_buffer=self._buffer)

    def _buffer(self, size: int) -> bytearray:
        """A buffer for decrypted bytes: one of this source's that nothing refers to any more
        (every memoryview of a bytearray holds a reference to it, so a buffer still being
        sent, or queued in the server's transport, is never reused), else a new one. Fresh
        1 MiB buffers cost page faults in every piece; a long stream cycles through a few."""
        for buffer in self.buffers:
            # References: the list, the loop variable and getrefcount's argument.
            if len(buffer) == size and sys.getrefcount(buffer) == 3:
                return buffer
        buffer = bytearray(size)
        if len(self.buffers) < KEPT_BUFFERS:
            self.buffers.append(buffer)
        return buffer
