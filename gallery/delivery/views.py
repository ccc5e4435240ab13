"""Sending media bytes: /m/<token>/<level>/ for the original (level "0") and its variants.

Django always decides who may read what (the owner only, for now; trashed and vault media
are 404 for everyone, like an unknown token). Who sends the bytes is DELIVERY_MODE:
- stream: this process, in constant memory, with ranges and conditional requests
  (gallery.delivery.ranges). Local files are read in chunks; S3 objects with ranged GETs of the
  blocks asked for, through the disk cache gallery.delivery.blobcache when it is enabled.
- x-accel: an empty answer with X-Accel-Redirect to nginx's internal location
  (deploy/nginx.conf), which sends the file itself with its own range support.
- redirect: 302 to a short-lived presigned S3 URL. Settings refuse this mode without S3;
  should a test swap the storage to local anyway, we stream instead.

Cost per request: one thread hop does everything blocking before the first byte (the
lookup, a presigned URL, the first chunk of the body); the lookup is one query for the
media (or variant) with its owner, after the session or API key (see find_target).

Cache-Control: variants are immutable for a year (a changed variant is a new key; links
should carry a version, e.g. ?v=<created>, which this view ignores); originals are
`private, no-cache`: browsers keep them but revalidate (a cheap 304) so a trashed or
vaulted original stops being shown at once.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace
from typing import BinaryIO
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.core.exceptions import ValidationError
from django.core.files.storage import Storage
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_http_methods

from gallery.delivery import ranges
from gallery.delivery.blobcache import BlobCache, get_cache
from gallery.models import Media, User, Variant
from gallery.processing.filetypes import clean_media_type, safe_served_type
from gallery.services.accounts import apikey_authenticate
from gallery.storage import is_s3, media_storage, presign_url, s3_client

logger = logging.getLogger(__name__)

# Bytes held per response in flight. Each chunk costs a thread hop; at 256 KiB uvicorn
# delivered 0.66 of nginx's throughput on a 1 GiB file, at 1 MiB about the same as nginx
# (bench/stream.py).
CHUNK_SIZE = 1024 * 1024
ORIGINAL_LEVEL = "0"
VARIANT_CACHE_CONTROL = "private, max-age=31536000, immutable"
ORIGINAL_CACHE_CONTROL = "private, no-cache"
# Originals of these types (a closed list of formats browsers display without running
# anything) may be shown in the browser; anything else is sent as an attachment. Every
# answer also carries nosniff and a sandboxing CSP, so even a page that got past the type
# decision (gallery.processing.filetypes) runs no script on our origin.
_INLINE_TYPES = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "video/mp4", "video/webm",
    "audio/mpeg", "audio/mp4", "audio/ogg", "audio/wav", "audio/x-wav", "audio/flac", "audio/webm",
    "application/pdf",
})
SANDBOX_CSP = "sandbox; default-src 'none'"
# Our own threads for blocking reads: asyncio's default pool has cpu+4 threads, and a few
# slow S3 reads must not stall everything else that uses it.
_io_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="delivery")


@dataclass(frozen=True)
class Target:
    """The blob a request resolved to, and how to describe it."""

    key: str
    owner_id: str
    rep: ranges.Representation
    filename: str | None  # originals only: for Content-Disposition


# --- Authorisation -----------------------------------------------------------------------
# Sessions of this backend name a user by primary key, valid while the user is active
# (ModelBackend.get_user); the lookup below checks both. Any other backend goes through
# Django's get_user.
_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@dataclass(frozen=True)
class _Claim:
    """Who the credential says the caller is; `session_hash` is still to be checked."""

    user_id: uuid.UUID
    session_hash: str | None  # None: an API key, verified already


def _claim(request: HttpRequest) -> _Claim | None:
    # The session alone, not request.user: loading the user is a second query, and the one
    # that finds the media brings its owner's row (is_active, password) along.
    session = request.session
    raw_id = session.get(SESSION_KEY)
    if raw_id is not None and session.get(BACKEND_SESSION_KEY) == _MODEL_BACKEND \
            and _MODEL_BACKEND in settings.AUTHENTICATION_BACKENDS:
        try:
            return _Claim(User._meta.pk.to_python(raw_id), session.get(HASH_SESSION_KEY) or "")
        except ValidationError:
            pass
    user = _caller(request)
    return None if user is None else _Claim(user.pk, None)


def _caller(request: HttpRequest) -> User | None:
    user = request.user
    if user.is_authenticated:
        return user
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and raw.strip():
        key = apikey_authenticate(raw=raw.strip())
        if key is not None:
            return key.user
    return None


def find_target(request: HttpRequest, token: str, level: str) -> Target | None:
    """The blob behind token/level if the caller may read it, else None (always a 404)."""
    claim = _claim(request)
    if claim is None:
        return None
    # One query: the media the claimed user may see (or its variant), with the owner's row.
    media_qs = Media.objects.visible_to_id(claim.user_id).filter(token=token)
    if level == ORIGINAL_LEVEL:
        media, variant = media_qs.select_related("owner").first(), None
    else:
        variant = Variant.objects.select_related("media__owner").filter(level=level, media__in=media_qs).first()
        media = variant.media if variant is not None else None
    if media is None:
        return None
    if claim.session_hash is not None and not constant_time_compare(
            claim.session_hash, media.owner.get_session_auth_hash()):
        # Not signed with the owner's current password hash and SECRET_KEY: Django decides (it
        # re-keys a session signed with a SECRET_KEY_FALLBACKS key and flushes any other).
        user = _caller(request)
        if user is None or user.pk != media.owner_id:
            return None
    if variant is None:
        if not media.original_key or media.status == Media.Status.UPLOADING:
            return None
        etag = media.sha256[:32] if media.sha256 else _key_digest(media.original_key, media.size)
        rep = ranges.Representation(size=media.size, etag=f'"{etag}"', last_modified=media.updated_at,
                                    content_type=media.content_type or "application/octet-stream")
        return Target(media.original_key, str(media.owner_id), rep, media.original_filename)
    if not variant.storage_key:
        return None
    rep = ranges.Representation(size=variant.size, etag=f'"{_key_digest(variant.storage_key, variant.size)}"',
                                last_modified=variant.created_at, content_type=variant.content_type)
    return Target(variant.storage_key, str(media.owner_id), rep, None)


def _key_digest(key: str, size: int) -> str:
    # Stored keys are immutable, so key and size identify the bytes.
    return hashlib.sha256(f"{key}\0{size}".encode()).hexdigest()[:32]


# --- Headers -----------------------------------------------------------------------------
def content_disposition(disposition: str, filename: str) -> str:
    """RFC 6266 value: an ASCII filename= fallback, and filename*= in UTF-8 when it differs."""
    filename = re.sub(r"[\x00-\x1f\x7f/\\]", "_", filename).strip() or "download"
    fallback = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    # Inside the quoted fallback: no quotes or backslashes, and no % that a browser might decode.
    fallback = re.sub(r'["%]', "_", fallback).strip() or "download"
    value = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def _inline_allowed(content_type: str) -> bool:
    return clean_media_type(content_type) in _INLINE_TYPES


def _with_safe_type(target: Target) -> Target:
    # Rows recorded before types were sniffed may hold a raw client value ("image/png,
    # text/html", a CR/LF, non-Latin-1 text): never send one as a header or as a page.
    return replace(target, rep=replace(target.rep, content_type=safe_served_type(target.rep.content_type)))


def _common_headers(target: Target, download: bool) -> dict[str, str]:
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": SANDBOX_CSP}
    if target.filename is None:
        headers["Cache-Control"] = VARIANT_CACHE_CONTROL
    else:
        headers["Cache-Control"] = ORIGINAL_CACHE_CONTROL
        inline = not download and _inline_allowed(target.rep.content_type)
        headers["Content-Disposition"] = content_disposition("inline" if inline else "attachment", target.filename)
    return headers


# --- Views -------------------------------------------------------------------------------
@require_http_methods(["GET", "HEAD"])
def serve_media(request: HttpRequest, token: str, level: str) -> HttpResponseBase:
    """Send the original (level "0") or a variant of the media with this token.

    A sync view: under ASGI Django runs it in one thread hop, which does all the blocking
    work before the first byte (the lookup, a presigned URL, the first chunk); the rest of a
    body is read in _io_pool threads.
    """
    target = find_target(request, token, level)
    if target is None:
        raise Http404("no such media")
    target = _with_safe_type(target)
    download = request.GET.get("download") == "1" and target.filename is not None
    headers = _common_headers(target, download)
    mode = settings.DELIVERY_MODE
    if mode == "x-accel":
        return _accel_response(target, headers)
    storage = media_storage()
    if mode == "redirect" and is_s3(storage):
        return _redirect_response(storage, target, headers)
    decision = ranges.evaluate(request.method, request.headers, target.rep)
    return _stream_response(request, storage, target, decision, headers)


def _accel_response(target: Target, headers: dict[str, str]) -> HttpResponse:
    # nginx answers Range and conditional requests itself, from the file it aliases.
    response = HttpResponse(content_type=target.rep.content_type)
    response["X-Accel-Redirect"] = settings.DELIVERY_ACCEL_PREFIX + quote(target.key, safe="/")
    for name, value in headers.items():
        response[name] = value
    return response


def _redirect_response(storage: Storage, target: Target, headers: dict[str, str]) -> HttpResponse:
    params = {"ResponseContentType": target.rep.content_type, "ResponseCacheControl": headers["Cache-Control"]}
    if "Content-Disposition" in headers:
        params["ResponseContentDisposition"] = headers["Content-Disposition"]
    url = presign_url("get_object", params={"Key": target.key, **params}, expires_in=settings.DELIVERY_PRESIGN_SECONDS)
    response = HttpResponse(status=302)
    response["Location"] = url
    # S3 cannot be told to send a CSP: the bytes come from the storage's origin, not ours.
    response["Content-Security-Policy"] = headers["Content-Security-Policy"]
    response["X-Content-Type-Options"] = headers["X-Content-Type-Options"]
    # The redirect outlives its URL if cached; the next request asks again.
    response["Cache-Control"] = "private, no-store"
    return response


def _stream_response(request: HttpRequest, storage: Storage, target: Target,
                     decision: ranges.Decision, headers: dict[str, str]) -> StreamingHttpResponse:
    send_body = request.method != "HEAD" and decision.status in (200, 206)
    chunks: Iterator[bytes] = _body(_source(storage, target), decision) if send_body else iter(())
    # A streaming response even when empty: CommonMiddleware adds "Content-Length: 0" to a
    # plain 304, which RFC 9110 §8.6 forbids (it must be absent or the 200's length).
    if isinstance(request, ASGIRequest):
        length = int(decision.headers.get("Content-Length", 0)) if send_body else 0
        response = StreamingHttpResponse(_in_threads(chunks, length), status=decision.status)
    else:
        response = StreamingHttpResponse(chunks, status=decision.status)
    for name, value in headers.items():
        response[name] = value
    for name, value in decision.headers.items():
        response[name] = value
    if "Content-Type" not in decision.headers:
        del response["Content-Type"]
    if decision.status in (412, 416):
        # An error about this request only: never keep it for a year like the variant.
        response["Cache-Control"] = "no-store"
    return response


def _in_threads(chunks: Iterator[bytes], length: int) -> AsyncIterator[bytes]:
    """The body as an async iterator; blocking reads never run on the event loop.

    The first chunk is read now, in the view's thread (no hop of its own, and it is ready when
    the headers go); the others in _io_pool threads. Pulling stops after `length` bytes, the
    Content-Length, rather than spending a hop to learn that the iterator is done.
    """
    first = next(chunks, b"") if length else b""
    if len(first) >= length:
        _close(chunks)
    return _rest_in_threads(first, chunks, length - len(first))


async def _rest_in_threads(first: bytes, chunks: Iterator[bytes], remaining: int) -> AsyncIterator[bytes]:
    done = object()
    pending: Future | None = None
    try:
        if first:
            yield first
        while remaining > 0:
            pending = _io_pool.submit(next, chunks, done)
            chunk = await asyncio.wrap_future(pending)
            if chunk is done:
                return
            remaining -= len(chunk)
            yield chunk
    finally:
        # On a disconnect the thread may still be inside next(): close the files after it.
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _f: _close(chunks))
        else:
            _close(chunks)


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


# --- Reading bytes -----------------------------------------------------------------------
def _body(source: _Source, decision: ranges.Decision) -> Iterator[bytes]:
    with source:
        if decision.multipart:
            for part in decision.parts:
                yield part.head
                yield from source.read(part.first, part.last)
            yield decision.trailer
        else:
            for first, last in decision.ranges:
                yield from source.read(first, last)


class _Source(abc.ABC):
    """Bytes of one blob: `read(first, last)` yields them in chunks of at most CHUNK_SIZE."""

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @abc.abstractmethod
    def read(self, first: int, last: int) -> Iterator[bytes]:
        """Bytes first..last (inclusive)."""


class _FileSource(_Source):
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


class _S3Source(_Source):
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


class _CachedS3Source(_S3Source):
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


def _source(storage: Storage, target: Target) -> _Source:
    if not is_s3(storage):
        return _FileSource(storage, target.key)
    cache = get_cache()
    if cache is None:
        return _S3Source(storage, target.key, target.rep.size)
    return _CachedS3Source(storage, target.key, target.rep.size, target.owner_id, cache)
