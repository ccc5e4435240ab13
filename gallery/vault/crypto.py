"""The vault's cryptography: pure functions over bytes (no Django, no storage, no clock).

Key hierarchy (docs/vault.md):
    passphrase --Argon2id(salt, m, t, p)--> key-encryption key --AES-256-GCM--> vault key
    recovery key (256 random bits) --HKDF-SHA256(salt)--> recovery KEK --AES-256-GCM--> vault key
    vault key --AES-256-GCM(aad = media id)--> file key (one per media: original, variants, metadata)

Blob format (every encrypted original, variant and metadata blob):
    header, 32 bytes: b"CHMKVLT1" | chunk size (u32 BE) | plaintext size (u64 BE) | nonce prefix (8) | 0 (u32)
    then ceil(size / chunk) chunks (one empty chunk for an empty plaintext), each
    AES-256-GCM(file key, nonce = prefix || index (u32 BE), aad = file id || index (u32 BE) || final (1 byte))
    = ciphertext of chunk-size bytes (the last: the rest) followed by its 16-byte tag.
The file id is 16 bytes naming the blob (blob_file_id: the media id and the level), so a chunk
cannot be moved to another index, another blob or past the end (the final flag) without
its tag failing; a changed header field moves chunk boundaries, nonces or the final flag, so
it fails the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"CHMKVLT1"
HEADER = struct.Struct(">8sIQ8sI")
HEADER_SIZE = HEADER.size  # 32
TAG_SIZE = 16
KEY_SIZE = 32
SALT_SIZE = 16
# 64 KiB (docs/vault.md): a range's first byte waits for one chunk to be read and checked
# (64 KiB, not 1 MiB: a video seek or a thumbnail is served at about a library item's
# speed), a range reads at most 2 x 64 KiB it does not need, and the tags cost 16 bytes per
# 64 KiB (0.02 %). Decrypted chunks are sent in 1 MiB pieces, so delivery's per-piece cost
# (a thread hop) stays what it is for library items.
CHUNK_SIZE = 64 * 1024
MAX_CHUNKS = 2**32
MAX_CHUNK_SIZE = 16 * 2**20  # what a reader accepts in a header


class VaultCryptoError(Exception):
    """A key that does not open, or bytes that are not what was encrypted (flipped,
    truncated, reordered, swapped): never returned as plaintext."""


# --- Keys ----------------------------------------------------------------------------------
def new_key() -> bytes:
    return os.urandom(KEY_SIZE)


def new_salt() -> bytes:
    return os.urandom(SALT_SIZE)


def passphrase_kek(passphrase: str, salt: bytes, *, memory_kib: int, time_cost: int, parallelism: int) -> bytes:
    """The key-encryption key of a passphrase: Argon2id (NFC-normalised UTF-8 of the passphrase)."""
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return hash_secret_raw(secret=secret, salt=salt, time_cost=time_cost, memory_cost=memory_kib,
                           parallelism=parallelism, hash_len=KEY_SIZE, type=Type.ID)


def hkdf(secret: bytes, *, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(secret)


def recovery_key_new() -> tuple[bytes, str]:
    """A random recovery key: its 256 bits and how it is shown (base32 in groups of four)."""
    raw = os.urandom(KEY_SIZE)
    text = base64.b32encode(raw).decode("ascii").rstrip("=")
    return raw, "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def recovery_key_parse(text: str) -> bytes | None:
    """The 256 bits of a recovery key as typed (groups, case and spaces aside); None if malformed."""
    cleaned = "".join(ch for ch in str(text).upper() if ch.isalnum())
    if len(cleaned) != 52:
        return None
    try:
        raw = base64.b32decode(cleaned + "====")
    except (ValueError, TypeError):
        return None
    return raw if len(raw) == KEY_SIZE else None


def recovery_kek(recovery: bytes, salt: bytes) -> bytes:
    # The recovery key has 256 bits of entropy: a fast KDF is enough (nothing to stretch).
    return hkdf(recovery, salt=salt, info=b"chipmunk vault recovery kek")


def wrap(key: bytes, wrapping_key: bytes, aad: bytes) -> bytes:
    """`key` encrypted under `wrapping_key`: random 12-byte nonce || AES-256-GCM(key, aad)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(wrapping_key).encrypt(nonce, key, aad)


def unwrap(blob: bytes, wrapping_key: bytes, aad: bytes) -> bytes:
    blob = bytes(blob)
    if len(blob) < 12 + TAG_SIZE:
        raise VaultCryptoError("a wrapped key is too short")
    try:
        return AESGCM(wrapping_key).decrypt(blob[:12], blob[12:], aad)
    except InvalidTag:
        raise VaultCryptoError("the key does not open this") from None


def keyed_digest(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 hex: stands for a SHA-256 where the plain one would say what a file is."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


# --- Chunked blobs -------------------------------------------------------------------------
def blob_file_id(media_id: uuid.UUID | str, level: str) -> bytes:
    """The 16-byte file id of one blob of a media ("0" original, a variant level, "meta")."""
    media_uuid = media_id if isinstance(media_id, uuid.UUID) else uuid.UUID(str(media_id))
    return hashlib.sha256(b"chipmunk vault blob\0" + media_uuid.bytes + level.encode("utf-8")).digest()[:16]


@dataclass(frozen=True)
class Header:
    chunk_size: int
    size: int  # plaintext bytes
    prefix: bytes

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk_size))

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, self.chunk_size, self.size, self.prefix, 0)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """(offset in the blob, length with its tag) of chunk `index`."""
        plain = min(self.chunk_size, self.size - index * self.chunk_size)
        return HEADER_SIZE + index * (self.chunk_size + TAG_SIZE), plain + TAG_SIZE


def header_parse(data: bytes) -> Header:
    if len(data) < HEADER_SIZE:
        raise VaultCryptoError("the blob is shorter than its header")
    magic, chunk_size, size, prefix, reserved = HEADER.unpack(bytes(data[:HEADER_SIZE]))
    if magic != MAGIC or reserved != 0 or not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise VaultCryptoError("not a vault blob of a known format")
    header = Header(chunk_size=chunk_size, size=size, prefix=prefix)
    if header.chunks > MAX_CHUNKS:
        raise VaultCryptoError("the blob declares more chunks than the format allows")
    return header


def ciphertext_size(size: int, chunk_size: int = CHUNK_SIZE) -> int:
    return HEADER_SIZE + size + TAG_SIZE * max(1, -(-size // chunk_size))


def chunk_nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def chunk_aad(file_id: bytes, index: int, final: bool) -> bytes:
    return file_id + struct.pack(">I?", index, final)


def encrypt_chunks(key: bytes, file_id: bytes, size: int, pieces: Iterable[bytes], *,
                   chunk_size: int = CHUNK_SIZE, prefix: bytes | None = None) -> Iterator[bytes]:
    """The blob of `size` plaintext bytes arriving as `pieces` (any sizes): the header, then
    each chunk as soon as it is full. Raises VaultCryptoError if the pieces are not `size` bytes."""
    header = Header(chunk_size=chunk_size, size=size, prefix=prefix if prefix is not None else os.urandom(8))
    aead = AESGCM(key)
    yield header.pack()
    carry = b""  # less than a chunk, waiting for the next piece (the only bytes copied)
    index, seen = 0, 0
    last = header.chunks - 1
    for piece in pieces:
        seen += len(piece)
        if seen > size:
            raise VaultCryptoError(f"more than the {size} bytes announced")
        data = carry + piece if carry else piece
        with memoryview(data) as view:
            pos = 0
            while len(view) - pos >= chunk_size and index < last:
                yield aead.encrypt(chunk_nonce(header.prefix, index), view[pos:pos + chunk_size],
                                   chunk_aad(file_id, index, False))
                pos += chunk_size
                index += 1
            carry = bytes(view[pos:])
    if seen != size:
        raise VaultCryptoError(f"{seen} bytes where {size} were announced")
    yield aead.encrypt(chunk_nonce(header.prefix, index), carry, chunk_aad(file_id, index, True))


def encrypt_bytes(key: bytes, file_id: bytes, data: bytes, *, chunk_size: int = CHUNK_SIZE,
                  prefix: bytes | None = None) -> bytes:
    return b"".join(encrypt_chunks(key, file_id, len(data), [data], chunk_size=chunk_size, prefix=prefix))


def decrypt_chunk(key: bytes, file_id: bytes, header: Header, index: int, sealed: bytes | memoryview,
                  aead: AESGCM | None = None) -> bytes:
    if len(sealed) != header.chunk_span(index)[1]:
        raise VaultCryptoError(f"chunk {index} is truncated")
    try:
        return (aead or AESGCM(key)).decrypt(chunk_nonce(header.prefix, index), sealed,
                                             chunk_aad(file_id, index, index == header.chunks - 1))
    except InvalidTag:
        raise VaultCryptoError(f"chunk {index} does not authenticate") from None


def decrypt_bytes(key: bytes, file_id: bytes, blob: bytes) -> bytes:
    header = header_parse(blob)
    end = HEADER_SIZE + header.size + TAG_SIZE * header.chunks
    if len(blob) != end:
        raise VaultCryptoError(f"the blob has {len(blob)} bytes, its header says {end}")
    aead = AESGCM(key)
    out = bytearray()
    for index in range(header.chunks):
        first, length = header.chunk_span(index)
        out += decrypt_chunk(key, file_id, header, index, blob[first:first + length], aead)
    return bytes(out)


def decrypt_span(key: bytes, file_id: bytes, header: Header, first: int, last: int,
                 sealed_pieces: Iterable[bytes], *, piece_size: int = 1024 * 1024,
                 new_buffer: Callable[[int], bytearray] = bytearray) -> Iterator[memoryview]:
    """Plaintext bytes first..last (inclusive) from the sealed chunks that hold them, which
    `sealed_pieces` yields in order (any piece sizes) starting at chunk first // chunk_size.
    Only those chunks are decrypted. The first chunk is yielded as soon as it is checked (the
    time to first byte is one chunk's), the rest in pieces of about `piece_size`.

    Each piece is a view of a buffer from `new_buffer(size)`, which must not hand out a buffer
    that anything may still read (a server may still be sending it), into which the chunks
    were decrypted in place (decrypt_into):
    no bytes object per chunk, no join. A chunk that does not authenticate raises before
    the piece holding it is yielded, so unchecked bytes never leave."""
    aead = AESGCM(key)
    size = header.chunk_size
    index, stop = first // size, last // size
    final = header.chunks - 1
    full, last_length = size + TAG_SIZE, header.chunk_span(final)[1]
    prefix = header.prefix
    carry = b""  # the start of a sealed chunk that straddles two pieces (the only bytes copied)
    per_piece = 1  # chunks in the piece being filled: one for the first (the time to first byte)
    view: memoryview | None = None
    filled = 0  # plaintext bytes in `view`
    base = index * size  # the plaintext offset of view[0]

    def opened(sealed) -> None:
        nonlocal index, view, filled
        if view is None:
            view = memoryview(new_buffer(per_piece * size))
        length = len(sealed) - TAG_SIZE
        try:  # (decrypt_chunk's work, inlined: this runs 16 times per MiB)
            aead.decrypt_into(prefix + index.to_bytes(4, "big"), sealed,
                              file_id + index.to_bytes(4, "big") + (b"\x01" if index == final else b"\x00"),
                              view[filled:filled + length])
        except InvalidTag:
            raise VaultCryptoError(f"chunk {index} does not authenticate") from None
        filled += length
        index += 1

    def piece() -> memoryview:
        nonlocal view, filled, base, per_piece
        out = view[max(0, first - base):min(filled, last + 1 - base)]
        base += filled
        view, filled, per_piece = None, 0, max(1, piece_size // size)
        return out

    for sealed_piece in sealed_pieces:
        with memoryview(sealed_piece) as sealed_view:
            pos = 0
            while index <= stop:
                length = full if index < final else last_length
                if carry:
                    need = length - len(carry)
                    if len(sealed_view) < need:
                        break
                    opened(carry + bytes(sealed_view[:need]))
                    carry, pos = b"", need
                elif len(sealed_view) - pos >= length:
                    opened(sealed_view[pos:pos + length])
                    pos += length
                else:
                    break
                if filled >= per_piece * size or index > stop:
                    yield piece()
            if index <= stop:
                carry += bytes(sealed_view[pos:])
        if index > stop:
            break
    if index <= stop:
        raise VaultCryptoError(f"the blob ends before chunk {index}")


# --- Streams being uploaded (tus) ----------------------------------------------------------
def ctr_at(key: bytes, offset: int):
    """An AES-256-CTR transform positioned at byte `offset` of a stream: a tus part file is
    encrypted with it as bytes arrive at any offset, and converted to the chunked format
    once complete (the running SHA-256 is taken over the plaintext)."""
    block, skip = divmod(offset, 16)
    transform = Cipher(algorithms.AES(key), modes.CTR(block.to_bytes(16, "big"))).encryptor()
    if skip:
        transform.update(bytes(skip))
    return transform
