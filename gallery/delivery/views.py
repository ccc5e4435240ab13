"""Sending media bytes: /m/<token>/<level>/ for the original (level "0") and its variants.

Django always decides who may read what: the caller comes from gallery.auth (the API's own
authentication classes) and what they may see from Media.objects.visible_to, the one rule
every door uses (the owner's library; their vault items while the asking credential holds
the vault unlocked, gallery.vault.keys; trashed media and everything else are 404, like an
unknown token). Who sends the bytes is chosen per target (delivery_mode):
DELIVERY_MODE for library media, always this process for vault items:
- stream: this process, in constant memory, with ranges and conditional requests
  (gallery.delivery.ranges), reading from gallery.delivery.sources: local files in chunks,
  S3 objects with ranged GETs of the blocks asked for, through the disk cache
  gallery.delivery.blobcache when it is enabled.
- x-accel: an empty answer with X-Accel-Redirect to nginx's internal location
  (deploy/nginx.conf), which sends the file itself with its own range support.
- redirect: 302 to a short-lived presigned S3 URL. Settings refuse this mode without S3;
  should a test swap the storage to local anyway, we stream instead.

Cost per request: one thread hop does everything blocking before the first byte (the
lookup, a presigned URL, the first chunk of the body); the lookup is the credential's
queries (session and user, or the API key with its user) and one for the media or variant.

Cache-Control: variants are immutable for a year (a changed variant is a new key; links
should carry a version, e.g. ?v=<created>, which this view ignores); originals are
`private, no-cache`: browsers keep them but revalidate (a cheap 304) so a trashed or
vaulted original stops being shown at once.

Share links have their own URLs, /s/<share token>/m/<token>/<level>/ (serve_shared_media):
the share is opened by gallery.sharing (live, unlocked) and the media found through the
visibility rule's share half, Media.objects.shared_by. The original needs allow_download;
unless the share shows metadata, nothing that may carry a position leaves: image levels are
WebP written without metadata, a JPEG original streams with its GPS blanked
(gallery.processing.jpeg_gps; same length, so ranges stay true), and any other original or
video rendition of a media with a known position is 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import unicodedata
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from urllib.parse import quote

from django.conf import settings
from django.core.files.storage import Storage
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.http import require_http_methods

from gallery.auth import authenticate
from gallery.delivery import ranges
from gallery.delivery.blobcache import close_iterator
from gallery.delivery.sources import PatchedSource, VaultSource, body, source_for
from gallery.exceptions import ChipmunkError
from gallery.models import Media, Variant
from gallery.processing.filetypes import clean_media_type, safe_served_type
from gallery.processing.jpeg_gps import gps_patches, is_jpeg
from gallery.services.vault import vault_file_key
from gallery.sharing import REFUSE, SEND_WITHOUT_GPS, share_open, share_sends
from gallery.storage import STORAGE_ERRORS, blob_head, is_s3, media_storage, presign_url
from gallery.vault import blobs, crypto, keys

logger = logging.getLogger(__name__)

ORIGINAL_LEVEL = "0"
VARIANT_CACHE_CONTROL = "private, max-age=31536000, immutable"
ORIGINAL_CACHE_CONTROL = "private, no-cache"
VAULT_CACHE_CONTROL = "private, no-store"
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
class Sealed:
    """How to open a vault blob: its file key and file id (gallery.vault.crypto)."""

    file_key: bytes
    file_id: bytes


@dataclass(frozen=True)
class Target:
    """The blob a request resolved to, and how to describe it."""

    key: str
    owner_id: str
    rep: ranges.Representation
    filename: str | None  # originals only: for Content-Disposition
    mode: str  # stream | x-accel | redirect: see delivery_mode
    # (offset, bytes) written over the blob's bytes as they stream (a share's GPS-free original).
    patches: tuple[tuple[int, bytes], ...] = ()
    sealed: Sealed | None = None  # a vault item's blob: decrypted on the way out


# --- Authorisation -----------------------------------------------------------------------
def find_target(request: HttpRequest, token: str, level: str) -> Target | None:
    """The blob behind token/level if the caller may read it, else None (always a 404).

    The caller comes from the API's authentication classes (gallery.auth) and what they may
    see from the one visibility rule (Media.objects.visible_to): the same answer as the API's.
    """
    caller = authenticate(request)
    if caller is None:
        return None
    found = _lookup(Media.objects.visible_to(caller.user), token, level)
    if found is not None:
        return _target(*found)
    # Not in the library: a vault item, if this credential holds the vault open.
    unlock = keys.unlocked(user_id=caller.user.pk, credential=keys.credential_of(request))
    if unlock is None:
        return None
    found = _lookup(Media.objects.visible_to(caller.user, vault=unlock).filter(in_vault=True), token, level,
                    sealed=True)
    return _vault_target(*found, unlock) if found is not None else None


def find_shared_target(request: HttpRequest, share_token: str, token: str, level: str) -> Target | None:
    """The blob behind token/level if the share (live, unlocked) shows it, else None (404)."""
    try:
        share = share_open(request, share_token)
    except ChipmunkError:
        return None
    found = _lookup(Media.objects.shared_by(share), token, level)
    if found is None:
        return None
    how = share_sends(share, *found)
    target = _target(*found) if how != REFUSE else None
    if target is not None and how == SEND_WITHOUT_GPS:
        return _without_gps(target)
    return target


# Bytes of a JPEG read to find its metadata: most fit in the first, some need the second.
_HEAD_READS = (256 * 1024, 4 * 1024 * 1024)


def _without_gps(target: Target) -> Target | None:
    """A JPEG original's target with its GPS blanked as it streams; None when its metadata
    cannot be read to the end (then nothing is sent)."""
    for length in _HEAD_READS:
        try:
            head = blob_head(target.key, target.rep.size, min(length, target.rep.size))
        except STORAGE_ERRORS:
            logger.exception("delivery: could not read the head of %s", target.key)
            return None
        patches = gps_patches(head) if is_jpeg(head) else None
        if patches is not None:
            rep = replace(target.rep, etag=target.rep.etag[:-1] + '-nogps"')
            return replace(target, rep=rep, patches=tuple(patches), mode="stream")
        if length >= target.rep.size:
            break
    return None


def _lookup(media_qs, token: str, level: str, *, sealed: bool = False) -> tuple[Media, Variant | None] | None:
    """(media, variant or None for the original) of this token and level within media_qs, in
    one query; with `sealed` (vault items) their VaultItem rows come along."""
    media_qs = media_qs.filter(token=token)
    if level == ORIGINAL_LEVEL:
        media, variant = (media_qs.select_related("vault_item") if sealed else media_qs).first(), None
    else:
        related = ("media", "media__vault_item") if sealed else ("media",)
        variant = Variant.objects.select_related(*related).filter(level=level, media__in=media_qs).first()
        media = variant.media if variant is not None else None
    return (media, variant) if media is not None else None


def _vault_target(media: Media, variant: Variant | None, unlock: keys.Unlocked) -> Target | None:
    """A vault item's blob for the unlocked owner: always streamed by us, decrypted per chunk."""
    item = media.vault_item
    if variant is None:
        return vault_original_target(unlock, media.pk, media.owner_id, media.original_key, media.size,
                                     media.updated_at, media.status, item.wrapped_key, item.sealed)
    return vault_variant_target(unlock, media.pk, media.owner_id, item.wrapped_key, variant.storage_key,
                                variant.size, variant.created_at, variant.content_type, variant.level)


# The columns of these two, in this order, are what the delivery lane's compiled vault queries
# read (gallery.delivery.streams): one definition of a vault item's Target for both doors.
def vault_original_target(unlock: keys.Unlocked, media_id, owner_id, key: str, size: int, updated_at, status: str,
                          wrapped: bytes, sealed: bytes) -> Target | None:
    if not key or status == Media.Status.UPLOADING:
        return None
    file_key = vault_file_key(unlocked=unlock, media_id=media_id, wrapped=wrapped)
    meta = blobs.meta_open(file_key=file_key, media_id=media_id, sealed=sealed)
    rep = ranges.Representation(size=size, etag=f'"{_key_digest(key, size)}"', last_modified=updated_at,
                                content_type=meta.get("content_type") or "application/octet-stream")
    sealed_key = Sealed(file_key, crypto.blob_file_id(media_id, ORIGINAL_LEVEL))
    return Target(key, str(owner_id), rep, meta.get("name") or "download", "stream", sealed=sealed_key)


def vault_variant_target(unlock: keys.Unlocked, media_id, owner_id, wrapped: bytes, key: str, size: int,
                         created_at, content_type: str, level: str) -> Target | None:
    if not key:
        return None
    file_key = vault_file_key(unlocked=unlock, media_id=media_id, wrapped=wrapped)
    rep = ranges.Representation(size=size, etag=f'"{_key_digest(key, size)}"', last_modified=created_at,
                                content_type=content_type)
    return Target(key, str(owner_id), rep, None, "stream", sealed=Sealed(file_key, crypto.blob_file_id(media_id, level)))


def _target(media: Media, variant: Variant | None) -> Target | None:
    mode = delivery_mode(media)
    if variant is None:
        if not media.original_key or media.status == Media.Status.UPLOADING:
            return None
        etag = media.sha256[:32] if media.sha256 else _key_digest(media.original_key, media.size)
        rep = ranges.Representation(size=media.size, etag=f'"{etag}"', last_modified=media.updated_at,
                                    content_type=media.content_type or "application/octet-stream")
        return Target(media.original_key, str(media.owner_id), rep, media.original_filename, mode)
    if not variant.storage_key:
        return None
    rep = ranges.Representation(size=variant.size, etag=f'"{_key_digest(variant.storage_key, variant.size)}"',
                                last_modified=variant.created_at, content_type=variant.content_type)
    return Target(variant.storage_key, str(media.owner_id), rep, None, mode)


def delivery_mode(media: Media) -> str:
    """Who sends this media's bytes. DELIVERY_MODE for library media; the app itself
    (stream) for anything that must never leave as plain bytes at rest (vault items), and
    whenever the mode cannot apply (redirect without S3)."""
    mode = settings.DELIVERY_MODE
    if media.in_vault or (mode == "redirect" and not is_s3()):
        return "stream"
    return mode


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
    if target.sealed is not None:
        headers["Cache-Control"] = VAULT_CACHE_CONTROL  # no plaintext copy in the browser's disk cache
    if target.filename is not None:
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
    return _serve(request, find_target(request, token, level))


@require_http_methods(["GET", "HEAD"])
def serve_shared_media(request: HttpRequest, share_token: str, token: str, level: str) -> HttpResponseBase:
    """The same, for a media that the share link `share_token` shows (no login needed)."""
    return _serve(request, find_shared_target(request, share_token, token, level))


def _serve(request: HttpRequest, target: Target | None) -> HttpResponseBase:
    if target is None:
        raise Http404("no such media")
    target = _with_safe_type(target)
    download = request.GET.get("download") == "1" and target.filename is not None
    headers = _common_headers(target, download)
    if target.mode == "x-accel":
        return _accel_response(target, headers)
    storage = media_storage()
    if target.mode == "redirect":
        return _redirect_response(storage, target, headers)
    decision = ranges.evaluate(request.method, request.headers, target.rep)
    return _stream_response(request, storage, target, decision, headers)


def _accel_response(target: Target, headers: dict[str, str]) -> HttpResponse:
    # nginx answers Range and conditional requests itself, from the file it aliases.
    response = HttpResponse(content_type=target.rep.content_type)
    response["X-Accel-Redirect"] = settings.DELIVERY_ACCEL_PREFIX + quote(target.key, safe="/")
    # Without a length the empty body is chunked, and nginx, which never reads the body of an
    # X-Accel-Redirect, cannot keep the upstream connection: a new one for every request.
    response["Content-Length"] = "0"
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
    chunks: Iterator[bytes] = target_chunks(storage, target, decision) if send_body else iter(())
    # A streaming response even when empty: CommonMiddleware adds "Content-Length: 0" to a
    # plain 304, which RFC 9110 §8.6 forbids (it must be absent or the 200's length).
    if isinstance(request, ASGIRequest):
        length = int(decision.headers.get("Content-Length", 0)) if send_body else 0
        response = _Streamed(_in_threads(chunks, length), status=decision.status)
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


def target_chunks(storage: Storage, target: Target, decision: ranges.Decision) -> Iterator[bytes]:
    """The bytes `decision` asks for of the target's blob: decrypted for a vault item, its GPS
    blanked for a share that hides it."""
    if target.sealed is None:
        source = source_for(storage, key=target.key, size=target.rep.size, owner=target.owner_id)
    else:
        inner = source_for(storage, key=target.key, size=crypto.ciphertext_size(target.rep.size),
                           owner=target.owner_id)
        source = VaultSource(inner, file_key=target.sealed.file_key, file_id=target.sealed.file_id,
                             size=target.rep.size)
    if target.patches:
        source = PatchedSource(source, list(target.patches))
    return body(source, decision)


class _Streamed(StreamingHttpResponse):
    """A streamed body whose memoryview pieces (a vault blob's plaintext, decrypted in place:
    gallery.vault.crypto.decrypt_span) go out as they are, not copied into bytes first."""

    def make_bytes(self, value):
        return value if type(value) is memoryview else super().make_bytes(value)


def _in_threads(chunks: Iterator[bytes], length: int) -> AsyncIterator[bytes]:
    """The body as an async iterator; blocking reads never run on the event loop.

    The first chunk is read now, in the view's thread (no hop of its own, and it is ready when
    the headers go). Up to READ_AHEAD_OVER more bytes are read in _io_pool threads, a hop per
    chunk; a longer body gets a reader thread of its own that stays up to READ_AHEAD chunks
    ahead of the sender, so reading (and a vault blob's decryption) overlaps sending. Pulling
    stops after `length` bytes, the Content-Length, rather than spending a hop to learn that
    the iterator is done.
    """
    first = next(chunks, b"") if length else b""
    if len(first) >= length:
        close_iterator(chunks)
    remaining = length - len(first)
    if remaining > READ_AHEAD_OVER:
        return _read_ahead(first, chunks, remaining)
    return _rest_in_threads(first, chunks, remaining)


# Bodies longer than this (past their first chunk) are read by a thread of their own, at most
# READ_AHEAD chunks (of up to sources.CHUNK_SIZE) ahead of what the client has taken. Its own
# thread, not one of _io_pool's: a download can last minutes, and 32 of them must not starve
# the pool every other body reads through.
READ_AHEAD_OVER = 4 * 1024 * 1024
READ_AHEAD = 3
_DONE = object()


async def _rest_in_threads(first: bytes, chunks: Iterator[bytes], remaining: int) -> AsyncIterator[bytes]:
    pending: Future | None = None
    try:
        if first:
            yield first
        while remaining > 0:
            pending = _io_pool.submit(next, chunks, _DONE)
            chunk = await asyncio.wrap_future(pending)
            if chunk is _DONE:
                return
            remaining -= len(chunk)
            yield chunk
    finally:
        # On a disconnect the thread may still be inside next(): close the files after it.
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _f: close_iterator(chunks))
        else:
            close_iterator(chunks)


async def _read_ahead(first: bytes, chunks: Iterator[bytes], remaining: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue = asyncio.Queue()
    room = threading.Semaphore(READ_AHEAD)
    leaving = threading.Event()

    def hand_over(item) -> None:
        try:
            loop.call_soon_threadsafe(arrived.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            leaving.set()

    def read() -> None:
        # The iterator is used and closed in this thread only (a generator must not be
        # closed from another thread while it runs).
        try:
            left = remaining
            while left > 0:
                room.acquire()
                if leaving.is_set():
                    return
                chunk = next(chunks, _DONE)
                hand_over(chunk)
                if chunk is _DONE:
                    return
                left -= len(chunk)
        except Exception as exc:  # noqa: BLE001 (raised where the body is sent: the connection is dropped)
            hand_over(exc)
        finally:
            close_iterator(chunks)

    if first:
        yield first
    reader = threading.Thread(target=read, name="delivery-ahead", daemon=True)
    reader.start()
    try:
        while remaining > 0:
            item = await arrived.get()
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise item
            remaining -= len(item)
            room.release()
            yield item
    finally:
        leaving.set()
        room.release()
